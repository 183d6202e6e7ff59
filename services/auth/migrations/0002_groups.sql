-- Groups a user belongs to: datasets shared with 'groups/{name}' are readable by the members.
ALTER TABLE users ADD COLUMN groups text[] NOT NULL DEFAULT '{}';

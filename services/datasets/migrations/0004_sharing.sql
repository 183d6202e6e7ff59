-- Dataset sharing (README "Users, sharing and tokens"): PRIVATE by default (owner and admins),
-- readable by named users/groups (readers: 'users/{name}' | 'groups/{name}') or by everyone (PUBLIC).
-- Before this, every authenticated user could read every dataset and the label public=true made a
-- dataset a SearchDatasets candidate for others: those datasets become PUBLIC, the rest PRIVATE.
ALTER TABLE datasets ADD COLUMN visibility smallint NOT NULL DEFAULT 1;  -- DatasetVisibility: 1 PRIVATE, 2 PUBLIC
ALTER TABLE datasets ADD COLUMN readers text[] NOT NULL DEFAULT '{}';
UPDATE datasets SET visibility = 2 WHERE labels @> '{"public": "true"}'::jsonb;
CREATE INDEX IF NOT EXISTS datasets_sharing_readers ON datasets USING gin (readers);
CREATE INDEX IF NOT EXISTS datasets_sharing_public ON datasets (create_time DESC, id DESC) WHERE visibility = 2;
CREATE INDEX IF NOT EXISTS datasets_sharing_owner ON datasets (owner, create_time DESC, id DESC);

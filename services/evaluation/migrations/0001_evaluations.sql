CREATE TABLE IF NOT EXISTS evaluations (
    id             uuid PRIMARY KEY,
    owner          text NOT NULL,
    request_id     text,
    spec           bytea NOT NULL,          -- serialized dmod.v1.EvaluationSpec
    state          smallint NOT NULL,       -- dmod.v1.EvaluationState
    state_message  text NOT NULL DEFAULT '',
    locations_done bigint NOT NULL DEFAULT 0,
    locations_total bigint NOT NULL DEFAULT 0,
    results        jsonb,                   -- {"locations": [...], "aggregate": {...}}
    result_dataset text NOT NULL DEFAULT '',
    job            text NOT NULL DEFAULT '',
    lease_until    timestamptz,             -- a runner holds the evaluation until then
    create_time    timestamptz NOT NULL DEFAULT now(),
    update_time    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (owner, request_id)
);
CREATE INDEX IF NOT EXISTS evaluations_owner_time ON evaluations (owner, create_time DESC, id DESC);
CREATE INDEX IF NOT EXISTS evaluations_job ON evaluations (job) WHERE job <> '';

-- Jobs, their events, attempts, allocations, the node pool, idempotency keys and log lines.

CREATE TABLE jobs (
    id              text PRIMARY KEY,
    owner           text NOT NULL,
    request_id      text NOT NULL DEFAULT '',
    spec            bytea NOT NULL,              -- dmod.v1.JobSpec (serialized)
    labels          jsonb NOT NULL DEFAULT '{}',
    priority        int NOT NULL DEFAULT 0,
    cpu_count       int NOT NULL,
    memory_bytes    bigint NOT NULL DEFAULT 0,
    state           smallint NOT NULL,           -- dmod.v1.JobState
    state_reason    text NOT NULL DEFAULT '',
    state_message   text NOT NULL DEFAULT '',
    attempt         int NOT NULL DEFAULT 1,
    progress_step   bigint NOT NULL DEFAULT 0,
    progress_total  bigint NOT NULL DEFAULT 0,
    output_dataset  text NOT NULL DEFAULT '',
    resolved        jsonb NOT NULL DEFAULT '{}',  -- role -> datasets/{id}
    staged          jsonb NOT NULL DEFAULT '{}',  -- role -> [{path, sha256, size}] pinned at STAGING
    launcher        text NOT NULL,
    pool            text NOT NULL,
    last_event_seq  bigint NOT NULL DEFAULT 0,
    version         bigint NOT NULL DEFAULT 1,   -- optimistic concurrency
    create_time     timestamptz NOT NULL DEFAULT now(),
    update_time     timestamptz NOT NULL DEFAULT now(),
    start_time      timestamptz,
    end_time        timestamptz,
    queued_time     timestamptz,                 -- for aging
    not_before      timestamptz,                 -- retry backoff: not launched before
    lease_owner     text,                        -- scheduler instance driving the job
    lease_expires   timestamptz,
    evaluation      text NOT NULL DEFAULT ''
);
CREATE INDEX jobs_owner_created ON jobs (owner, create_time DESC, id DESC);
CREATE INDEX jobs_created ON jobs (create_time DESC, id DESC);
CREATE INDEX jobs_active ON jobs (pool, state) WHERE state NOT IN (9, 10, 12);
CREATE INDEX jobs_labels ON jobs USING gin (labels);

CREATE TABLE job_request_keys (
    owner        text NOT NULL,
    request_id   text NOT NULL,
    request_hash text NOT NULL,
    job_id       text NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    create_time  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (owner, request_id)
);

CREATE TABLE job_events (
    job_id         text NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    seq            bigint NOT NULL,
    time           timestamptz NOT NULL DEFAULT clock_timestamp(),
    state          smallint NOT NULL,
    reason         text NOT NULL DEFAULT '',
    message        text NOT NULL DEFAULT '',
    progress_step  bigint NOT NULL DEFAULT 0,
    progress_total bigint NOT NULL DEFAULT 0,
    attempt        int NOT NULL DEFAULT 1,
    PRIMARY KEY (job_id, seq)
);

CREATE TABLE job_attempts (
    job_id          text NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    attempt         int NOT NULL,
    launcher        text NOT NULL,
    handle          jsonb,                        -- LaunchHandle: pid + start time, or swarm service
    state           text NOT NULL DEFAULT 'LAUNCHING',  -- LAUNCHING | RUNNING | EXITED | LOST | CANCELLED
    exit_code       int,
    exit_reason     text NOT NULL DEFAULT '',
    exit_message    text NOT NULL DEFAULT '',
    launch_time     timestamptz NOT NULL DEFAULT now(),
    started_time    timestamptz,                  -- the worker reported `started`
    end_time        timestamptz,
    last_heartbeat  timestamptz,
    PRIMARY KEY (job_id, attempt)
);

CREATE TABLE job_nodes (
    pool                   text NOT NULL,
    name                   text NOT NULL,
    hostname               text NOT NULL,
    cpus                   int NOT NULL,
    memory_bytes           bigint NOT NULL,
    allocated_cpus         int NOT NULL DEFAULT 0,
    allocated_memory_bytes bigint NOT NULL DEFAULT 0,
    ready                  boolean NOT NULL DEFAULT true,
    ordinal                int NOT NULL DEFAULT 0,
    update_time            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (pool, name),
    CHECK (allocated_cpus >= 0 AND allocated_memory_bytes >= 0)
);

CREATE TABLE job_allocations (
    job_id        text NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    attempt       int NOT NULL,
    pool          text NOT NULL,
    node          text NOT NULL,
    hostname      text NOT NULL,
    owner         text NOT NULL,
    cpus          int NOT NULL,
    memory_bytes  bigint NOT NULL DEFAULT 0,
    ordinal       int NOT NULL,
    allocate_time timestamptz NOT NULL DEFAULT now(),
    release_time  timestamptz,
    PRIMARY KEY (job_id, attempt, node)
);
CREATE INDEX job_allocations_active ON job_allocations (pool, owner) WHERE release_time IS NULL;

CREATE TABLE job_logs (
    id       bigserial PRIMARY KEY,
    job_id   text NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    attempt  int NOT NULL,
    line_no  bigint NOT NULL,                    -- the worker's line number within the attempt
    time     timestamptz NOT NULL,
    stream   text NOT NULL,
    rank     int NOT NULL DEFAULT 0,
    text     text NOT NULL,
    UNIQUE (job_id, attempt, line_no)
);
CREATE INDEX job_logs_job ON job_logs (job_id, id);

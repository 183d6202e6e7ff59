-- DatasetService: datasets, their objects, and resumable uploads.

CREATE TABLE datasets (
    id            uuid PRIMARY KEY,
    owner         text NOT NULL,
    display_name  text NOT NULL,
    category      smallint NOT NULL,
    data_format   smallint NOT NULL,
    domain        jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- Indexed copies of the domain, for filtering candidates.
    time_begin    timestamptz,
    time_end      timestamptz,
    hydrofabric_ids text[] NOT NULL DEFAULT '{}',
    description   text NOT NULL DEFAULT '',
    labels        jsonb NOT NULL DEFAULT '{}'::jsonb,
    state         smallint NOT NULL DEFAULT 1,          -- DatasetState: 1 OPEN, 2 SEALED
    size_bytes    bigint NOT NULL DEFAULT 0,
    object_count  bigint NOT NULL DEFAULT 0,
    derived_from  text[] NOT NULL DEFAULT '{}',
    request_id    text,
    create_time   timestamptz NOT NULL DEFAULT now(),
    update_time   timestamptz NOT NULL DEFAULT now(),
    seal_time     timestamptz,
    CONSTRAINT datasets_owner_display_name UNIQUE (owner, display_name)
);
CREATE UNIQUE INDEX datasets_owner_request ON datasets (owner, request_id) WHERE request_id IS NOT NULL;
CREATE INDEX datasets_page ON datasets (create_time DESC, id DESC);
CREATE INDEX datasets_kind ON datasets (category, data_format, state);
CREATE INDEX datasets_labels ON datasets USING gin (labels jsonb_path_ops);
CREATE INDEX datasets_time ON datasets (time_begin, time_end);
CREATE INDEX datasets_hydrofabric ON datasets USING gin (hydrofabric_ids);

CREATE TABLE dataset_objects (
    dataset_id    uuid NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,
    path          text NOT NULL,
    size_bytes    bigint NOT NULL,
    sha256        text NOT NULL,
    content_type  text NOT NULL DEFAULT 'application/octet-stream',
    s3_key        text NOT NULL,          -- unique per upload: datasets/{id}/{upload_id}/{path}
    upload_id     uuid NOT NULL,
    create_time   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (dataset_id, path)
);

-- One row per upload (streamed or presigned). Committed parts are a JSON array of
-- {"n": part number, "etag": S3 part etag, "size": bytes}; committed_bytes is their sum.
CREATE TABLE dataset_uploads (
    id              uuid PRIMARY KEY,
    dataset_id      uuid NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,
    owner           text NOT NULL,
    path            text NOT NULL,
    kind            text NOT NULL,                     -- 'stream' | 'presigned'
    s3_key          text NOT NULL,
    multipart_id    text,                              -- S3 multipart upload id, once started
    parts           jsonb NOT NULL DEFAULT '[]'::jsonb,
    committed_bytes bigint NOT NULL DEFAULT 0,
    size_bytes      bigint NOT NULL DEFAULT -1,        -- -1 = unknown
    expected_sha256 text NOT NULL DEFAULT '',
    content_type    text NOT NULL DEFAULT 'application/octet-stream',
    state           text NOT NULL DEFAULT 'ACTIVE',    -- ACTIVE | COMPLETE | ABORTED
    -- While a stream is writing, other writers of this upload wait or get ABORTED.
    lease_owner     text,
    lease_until     timestamptz,
    expire_time     timestamptz,
    create_time     timestamptz NOT NULL DEFAULT now(),
    update_time     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dataset_uploads_active ON dataset_uploads (state, update_time);
CREATE INDEX dataset_uploads_dataset ON dataset_uploads (dataset_id);

-- S3 keys to remove once no download can still be reading them (replaced or abandoned versions).
CREATE TABLE dataset_garbage (
    s3_key        text PRIMARY KEY,
    multipart_id  text,
    delete_after  timestamptz NOT NULL
);

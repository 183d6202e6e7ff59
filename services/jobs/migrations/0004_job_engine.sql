-- The engine pre-flight chose and validated a job against ("ngen" | "embedded"; '' before
-- VALIDATING ends, and for engine "noop"), with what is known of it (version, MPI library, path).
-- The worker runs this engine (LaunchRequest.engine), not the spec's "auto".
ALTER TABLE jobs ADD COLUMN engine text NOT NULL DEFAULT '';
ALTER TABLE jobs ADD COLUMN engine_detail text NOT NULL DEFAULT '';

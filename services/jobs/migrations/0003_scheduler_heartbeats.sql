-- Leases by heartbeat: a job's lease (jobs.lease_owner) holds while its owner's heartbeat row
-- here is current, so a scheduler renews one row, not one row per job it holds (thousands of
-- queued jobs made every renewal a large UPDATE). jobs.lease_expires is no longer used.
CREATE TABLE job_schedulers (
    instance  text PRIMARY KEY,
    expires   timestamptz NOT NULL
);
CREATE INDEX jobs_lease_owner ON jobs (lease_owner) WHERE lease_owner IS NOT NULL;

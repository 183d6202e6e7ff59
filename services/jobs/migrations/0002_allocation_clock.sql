-- Allocation times from the wall clock at the moment of the change (after the node rows are
-- locked), not the transaction start, so the allocation history orders like the locks did.
ALTER TABLE job_allocations ALTER COLUMN allocate_time SET DEFAULT clock_timestamp();

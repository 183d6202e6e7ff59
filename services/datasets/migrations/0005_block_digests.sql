-- SHA-256 of each 4 MiB block of an object's bytes (32 bytes per block, in order), recorded the
-- first time a byte range of the object is read (from one full read checked against `sha256`),
-- so that later ranged downloads verify just the blocks they touch. NULL until then, and reset
-- whenever the object is replaced.
ALTER TABLE dataset_objects ADD COLUMN block_sha256 bytea;

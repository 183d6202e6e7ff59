-- Small objects uploaded together (UploadObjects) share one S3 object, a "pack": the object's
-- bytes are s3_key[pack_offset : pack_offset + size_bytes]. NULL = the S3 object is the object.
ALTER TABLE dataset_objects ADD COLUMN pack_offset bigint;

-- The janitor removes a replaced pack only when no object row still points into it.
CREATE INDEX dataset_objects_pack_key ON dataset_objects (s3_key) WHERE pack_offset IS NOT NULL;

"""Generated gRPC/protobuf code for package dmod.v1 (make protos)."""

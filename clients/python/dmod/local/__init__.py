"""The embedded local stack: PostgreSQL, Redis, an S3 server, the services and Envoy on 127.0.0.1."""

"""Shared server plumbing: settings, logging, errors, database, redis, storage, auth, bootstrap."""

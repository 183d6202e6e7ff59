"""The `dmod` command line."""

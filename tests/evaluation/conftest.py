"""Evaluation tests are pure-library and fast: no stack, no network, no session fixtures."""

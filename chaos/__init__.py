"""`make chaos`: a real local stack, jobs under kill -9 / restart faults, the security suites,
six counters in bench/results/chaos.json (see chaos/run.py)."""

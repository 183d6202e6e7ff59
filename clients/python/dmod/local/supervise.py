"""Keep a child alive under a long-lived parent.

Envoy stops itself when its parent process exits (parent-death signal), so `dmod up` cannot
start it directly and return; this tiny supervisor is its parent instead, forwards signals and
exits with the child's status.
"""
from __future__ import annotations

import signal
import subprocess
import sys


def main(argv: list[str]) -> int:
    child = subprocess.Popen(argv)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: child.send_signal(signum))
    return child.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[2:] if sys.argv[1:2] == ["--"] else sys.argv[1:]))

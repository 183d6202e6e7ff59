"""Run a command in a network namespace of its own (`python -m dmod.local.netns -- CMD ...`).

The object store (SeaweedFS `weed mini`) runs a master, a volume server, a filer and an admin
server, each with an HTTP and a gRPC port and none with authentication that other local users
could not get around (the master hands out write tokens, gRPC is open). In a private network
namespace those ports exist only inside it: nobody on the host can connect to them. Only the S3
API leaves the namespace, through a Unix socket in a 0700 directory that a proxy on the host
(`dmod.local.s3`) forwards to 127.0.0.1 — and S3 checks every request's signature.

As root this is `unshare(CLONE_NEWNET)`; as another user a user namespace comes with it (the
user is root inside, itself outside). The loopback interface is brought up, then the command is
exec'd (same pid: the caller's pid is the server's).
"""
from __future__ import annotations

import ctypes
import fcntl
import os
import signal
import socket
import struct
import subprocess
import sys

CLONE_NEWNET = 0x40000000
CLONE_NEWUSER = 0x10000000
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


def _unshare(flags: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare: {os.strerror(err)}")


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))


def enter() -> None:
    """Move this process into a new network namespace with loopback up."""
    if os.geteuid() == 0:
        _unshare(CLONE_NEWNET)
    else:
        uid, gid = os.geteuid(), os.getegid()
        _unshare(CLONE_NEWUSER | CLONE_NEWNET)
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"0 {uid} 1")
        _write("/proc/self/gid_map", f"0 {gid} 1")
    _loopback_up()


def supported() -> bool:
    """Whether this machine lets us create a network namespace (containers may forbid it)."""
    try:
        return subprocess.run([sys.executable, "-m", "dmod.local.netns", "--", "true"], check=False, capture_output=True,
                              timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m dmod.local.netns -- CMD [ARGS...]", file=sys.stderr)
        return 2
    try:
        enter()
    except OSError as exc:
        print(f"dmod.local.netns: cannot create a network namespace: {exc}", file=sys.stderr)
        return 111
    try:
        child = subprocess.Popen(argv)
    except OSError as exc:
        print(f"dmod.local.netns: cannot start {argv[0]}: {exc}", file=sys.stderr)
        return 127
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: child.send_signal(signum))
    code = child.wait()
    return 128 - code if code < 0 else code


if __name__ == "__main__":
    sys.exit(main(sys.argv[2:] if sys.argv[1:2] == ["--"] else sys.argv[1:]))

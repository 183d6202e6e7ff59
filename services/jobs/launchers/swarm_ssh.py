"""The remote-launch command MPI uses between replicas: `ssh`, plus moving the job directory.

MPICH Hydra (HYDRA_LAUNCHER_EXEC) and Open MPI (OMPI_MCA_plm_rsh_agent) start their proxy on
every other host with `<agent> [ssh options] <host> <command...>`. Each replica has its own /work
volume, so before the proxy starts on a peer this wrapper copies rank 0's job directory (the
current directory of mpiexec: inputs laid out by the agent) to the same path on the peer, and when
the proxy has exited (the peer's ranks are done) it copies back every file the peer created or
changed (the outputs of its ranks). mpiexec waits for its launcher processes, so the outputs are
all on rank 0 when mpiexec returns and the agent checks and uploads them.

Hosts that are this container itself are launched without copying.
"""
from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys

# ssh options that take an argument (ssh(1)).
_WITH_ARG = set("BbcDEeFIiJLlmOoPpQRSWw")
MARKER = ".dmod-sync-marker"


def split_args(argv: list[str]) -> tuple[list[str], str, list[str]]:
    """(ssh options, host, remote command words)."""
    opts: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            i += 1
            break
        if not arg.startswith("-") or arg == "-":
            break
        opts.append(arg)
        if len(arg) == 2 and arg[1] in _WITH_ARG:
            i += 1
            if i < len(argv):
                opts.append(argv[i])
        i += 1
    if i >= len(argv):
        raise ValueError("no host given")
    return opts, argv[i], argv[i + 1:]


def is_local(host: str) -> bool:
    try:
        addrs = {info[4][0] for info in socket.getaddrinfo(host, None, socket.AF_INET)}
    except socket.gaierror:
        return False
    for addr in addrs:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            try:
                sock.bind((addr, 0))
                return True
            except OSError:
                continue
    return False


def _pipe(producer: list[str], consumer: list[str], cwd: str | None = None) -> int:
    prod = subprocess.Popen(producer, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, cwd=cwd)
    cons = subprocess.Popen(consumer, stdin=prod.stdout, cwd=cwd)
    assert prod.stdout is not None
    prod.stdout.close()
    return cons.wait() or prod.wait()


def push(host: str, folder: str) -> int:
    q = shlex.quote(folder)
    return _pipe(["tar", "-C", folder, "-cf", "-", "--exclude", f"./{MARKER}", "."],
                 ["ssh", host, f"mkdir -p {q} && tar -C {q} -xf - && touch {q}/{MARKER}"])


def pull(host: str, folder: str) -> int:
    q = shlex.quote(folder)
    remote = (f"cd {q} && find . -type f -newer {MARKER} ! -name {MARKER} -print0 | "
              f"tar --null -T - -cf -")
    return _pipe(["ssh", host, remote], ["tar", "-C", folder, "-xf", "-"])


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    opts, host, command = split_args(argv)
    folder = os.getcwd()
    local = is_local(host)
    if not local:
        code = push(host, folder)
        if code != 0:
            print(f"[dmod-ssh] copying {folder} to {host} failed ({code})", file=sys.stderr, flush=True)
            return 255
    code = subprocess.call(["ssh", *opts, host, *command])
    if not local:
        back = pull(host, folder)
        if back != 0:
            print(f"[dmod-ssh] copying outputs back from {host} failed ({back})", file=sys.stderr, flush=True)
            return code or 255
    return code


if __name__ == "__main__":
    sys.exit(main())

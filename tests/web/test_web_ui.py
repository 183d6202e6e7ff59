"""The web UI: built with esbuild, served by `dmod up` behind Envoy on the gateway origin, and
driven in headless Debian Chromium (playwright-core from clients/web, never a downloaded browser)."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
from dmod.services.runtime.registry import SERVICES

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "clients/web"
HERE = Path(__file__).resolve().parent
CHROMIUM = os.environ.get("DMOD_CHROMIUM", "/usr/bin/chromium")
TERMINAL = {"SUCCEEDED", "FAILED", "CANCELLED"}


def _newest_source() -> float:
    files = [WEB / "build.mjs", WEB / "package-lock.json", *WEB.glob("src/**/*"), *WEB.glob("static/**/*")]
    return max(f.stat().st_mtime for f in files if f.is_file())


@pytest.fixture(scope="session")
def web_dist() -> Path:
    """clients/web/dist, rebuilt when any source is newer than the bundle."""
    if not shutil.which("node") or not (WEB / "node_modules/esbuild").exists():
        pytest.skip("node or clients/web/node_modules missing: run scripts/setup")
    bundle = WEB / "dist/app.js"
    if not bundle.exists() or bundle.stat().st_mtime < _newest_source():
        subprocess.run(["node", "build.mjs"], cwd=WEB, check=True, timeout=180, capture_output=True)
    return WEB / "dist"


def _node(script: Path, *args: str, env: dict | None = None, timeout: float = 60) -> dict:
    done = subprocess.run(["node", str(script), *args], check=False, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    assert done.returncode == 0, f"{script.name} failed:\n{done.stderr[-4000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_gateway_serves_the_ui(stack, web_dist):
    base = f"http://{stack.gateway}"
    page = httpx.get(f"{base}/", timeout=10)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="app.js">' in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    script = httpx.get(f"{base}/app.js", headers={"accept-encoding": "gzip"}, timeout=10)
    assert script.status_code == 200 and script.headers["content-encoding"] == "gzip"
    assert script.headers["content-type"].startswith("text/javascript")
    again = httpx.get(f"{base}/app.js", headers={"if-none-match": script.headers["etag"]}, timeout=10)
    assert again.status_code == 304
    assert httpx.get(f"{base}/no-such-file.js", timeout=10).status_code == 404
    # grpc-web on the same listener is still routed to the services, not to the file server.
    reply = httpx.post(f"{base}/grpc.health.v1.Health/Check", content=b"\x00\x00\x00\x00\x00", timeout=10,
                       headers={"content-type": "application/grpc-web+proto", "x-grpc-web": "1"})
    assert reply.headers["content-type"].startswith("application/grpc-web")


def test_ui_typechecks_against_generated_code(web_dist):
    """tsc over src/ (incl. src/gen): a contract change that breaks the UI fails here, not in a browser.
    Skipped work when nothing changed since the last clean check (stamp in node_modules/.cache)."""
    inputs = sorted(f for f in [WEB / "tsconfig.json", WEB / "package-lock.json", *WEB.glob("src/**/*.ts")])
    digest = hashlib.sha256("".join(f"{f}:{f.stat().st_mtime_ns}:{f.stat().st_size}\n" for f in inputs).encode())
    stamp = WEB / "node_modules/.cache/dmod-typecheck"
    if stamp.exists() and stamp.read_text() == digest.hexdigest():
        return
    done = subprocess.run([str(WEB / "node_modules/.bin/tsc"), "-p", "tsconfig.json"], cwd=WEB, check=False,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:]
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(digest.hexdigest())


def test_incremental_sha256_matches_node_crypto(web_dist, tmp_path):
    bundle = tmp_path / "sha256.mjs"
    subprocess.run([str(WEB / "node_modules/.bin/esbuild"), str(WEB / "src/sha256.ts"), "--format=esm",
                    f"--outfile={bundle}", "--log-level=warning"], check=True, timeout=60)
    assert _node(HERE / "sha256_check.mjs", str(bundle))["failures"] == []


def _steps(report: dict) -> dict[str, dict]:
    return {s["name"]: s for s in report["steps"]}


def _listed_or_unimplemented(step: dict) -> None:
    assert step["listed"] or step["error"]["code"] == "UNIMPLEMENTED", step


def test_ui_in_chromium(stack, web_dist):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not installed: apt-get install -y chromium")
    if not (WEB / "node_modules/playwright-core").exists():
        pytest.skip("playwright-core missing in clients/web: npm ci")
    report = _node(HERE / "ui_check.mjs", timeout=300, env={
        "DMOD_UI_URL": f"http://{stack.gateway}", "DMOD_WEB_DIR": str(WEB), "CHROMIUM": CHROMIUM})
    steps = _steps(report)
    assert not [name for name in steps if name.endswith("-crashed")], report
    assert report["pageErrors"] == [] and report["consoleErrors"] == [], report

    # Health header: every service SERVING through grpc-web; the caller is the local default user.
    assert steps["health"]["services"] == len(SERVICES)
    assert steps["health"]["user"]
    # Rich errors: BadRequest field violations decoded and marked on the form; ErrorInfo reason shown.
    assert steps["login-invalid"]["code"] == "INVALID_ARGUMENT"
    assert set(steps["login-invalid"]["fields"]) == {"username", "password"}
    assert steps["login-invalid"]["marked"] == 2
    assert (steps["login-wrong"]["code"], steps["login-wrong"]["reason"]) == ("UNAUTHENTICATED", "BAD_CREDENTIALS")

    # Datasets: once DatasetService answers, create + presigned upload + download must work end to end.
    _listed_or_unimplemented(steps["datasets"])
    if steps["datasets"]["listed"]:
        assert steps["create-dataset"]["created"], steps["create-dataset"]
        assert steps["upload"]["uploaded"], steps["upload"]
        assert steps["download"]["matches"], steps["download"]

    # Jobs: a submitted job is watched live (WatchJob over grpc-web) to a terminal state (cancelled
    # from the UI if it is still running); a rejected submission shows a decoded error.
    _listed_or_unimplemented(steps["jobs"])
    if steps["jobs"]["listed"]:
        if "watch-job" in steps:
            watch = steps["watch-job"]
            assert watch["final"] in TERMINAL and watch["events"] >= 2, watch
            retry = steps.get("retry-job")
            if retry and retry["retried"]:
                assert retry["events"] > watch["events"] and retry["attempt"] == "2", retry
            elif retry:
                assert retry["error"]["code"] not in ("", "INTERNAL", "UNKNOWN"), retry
        else:
            error = steps["submit-job"]["error"]
            assert error["code"] not in ("", "INTERNAL", "UNKNOWN"), error

    _listed_or_unimplemented(steps["evaluations"])
    _listed_or_unimplemented(steps["nodes"])

"""The security suites of issue 16, run against the chaos stack when their modules exist:

  fuzz               tests/security/fuzz.py `run_fuzz(gateway, messages_per_rpc)` -> internal_or_unknown
  authz              tests/security/authz.py `chaos_counts(gateway, home, service_env)` -> leaks
  probe              tests/security/probe.py `probe_stack(state)` (a local non-root user) -> leaks
  worker_privilege   tests/security/test_worker_privilege.py `check_worker_privilege(gateway, home, scratch)` -> leaks

A suite whose module or function is missing, or that raises, is recorded as "not run" with the
reason; its count is never taken as 0. `leaks` is a number only when all three leak suites ran.
"""
from __future__ import annotations

import asyncio
import importlib.util
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

SECURITY = Path(__file__).resolve().parents[1] / "tests" / "security"
LEAK_SUITES = ("authz", "probe", "worker_privilege")


def _module(name: str):
    path = SECURITY / f"{name}.py"
    if not path.exists():
        return None
    key = f"dmod_chaos_{name}"
    if key in sys.modules:
        return sys.modules[key]
    spec = importlib.util.spec_from_file_location(key, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module  # dataclasses look their module up
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[key]
        raise
    return module


def _load(name: str, function: str):
    """(module, None) or (None, why it cannot run)."""
    try:
        mod = _module(name)
    except Exception as exc:  # noqa: BLE001
        return None, f"tests/security/{name}.py does not import: {type(exc).__name__}: {exc}"[:2000]
    if mod is None:
        return None, f"tests/security/{name}.py not found"
    if not hasattr(mod, function):
        return None, f"tests/security/{name}.py has no {function}()"
    return mod, None


def _attempt(name: str, fn) -> dict:
    started = time.perf_counter()
    try:
        out = fn()
    except Exception as exc:  # noqa: BLE001 - a suite that cannot run is reported, not counted
        return {"status": "not run", "why": f"{type(exc).__name__}: {exc}"[:2000],
                "trace": traceback.format_exc()[-3000:], "seconds": round(time.perf_counter() - started, 1)}
    out.setdefault("status", "ran")
    out["seconds"] = round(time.perf_counter() - started, 1)
    return out


def fuzz(state, messages: int) -> dict:
    mod, why = _load("fuzz", "run_fuzz")
    if mod is None:
        return {"status": "not run", "why": why}

    def go() -> dict:
        summary = mod.run_fuzz(state.gateway, messages)
        bad = summary.get("bad", [])
        return {"count": int(summary["internal_or_unknown"]), "messages_per_rpc": messages,
                "rpcs": len(summary.get("rpcs", {})), "total": summary.get("total"), "codes": summary.get("codes"),
                "canary_ok": summary.get("canary_ok"), "canary_failures": summary.get("canary_failures"),
                "healthy_after": summary.get("healthy_after"), "bad": bad[:25], "bad_total": len(bad),
                "summary": f"{summary.get('total')} messages over {len(summary.get('rpcs', {}))} RPCs "
                           f"({messages}/RPC): {summary['internal_or_unknown']} INTERNAL/UNKNOWN"}
    return _attempt("fuzz", go)


def authz(state) -> dict:
    mod, why = _load("authz", "chaos_counts")
    if mod is None:
        return {"status": "not run", "why": why}

    def go() -> dict:
        counts = asyncio.run(mod.chaos_counts(state.gateway, state.home, state.service_env()))
        table = counts.pop("table", "")
        return {"count": int(counts["leaks"]), **counts, "table_lines": len(table.splitlines()),
                "summary": f"{counts.get('calls')} calls ({counts.get('rpcs')} RPCs x {counts.get('identities')} "
                           f"identities): {counts['leaks']} leaks"}
    return _attempt("authz", go)


def probe(state) -> dict:
    mod, why = _load("probe", "probe_stack")
    if mod is None:
        return {"status": "not run", "why": why}

    def go() -> dict:
        report = mod.probe_stack(state)
        return {"count": int(report.leaks), "user": report.user, "checks": len(report.findings),
                "files_checked": report.files_checked, "gateway_reachable": report.gateway_reachable,
                "leaked": [f"{f.target}: {f.detail}" for f in report.leaked()],
                "summary": f"{len(report.findings)} checks as {report.user}: {report.leaks} leaks"}
    return _attempt("probe", go)


def worker_privilege(state) -> dict:
    mod, why = _load("test_worker_privilege", "check_worker_privilege")
    if mod is None:
        return {"status": "not run", "why": why}

    def go() -> dict:
        scratch = Path(tempfile.mkdtemp(prefix="dmod-chaos-privilege-"))
        try:
            result = asyncio.run(mod.check_worker_privilege(state.gateway, state.home, scratch))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return {"count": int(result["leaks"]), "problems": result.get("problems", []),
                "isolated": result.get("isolated"), "attempts": result.get("attempts"),
                "blocked": result.get("blocked"),
                "summary": f"attacking model: {result.get('attempts')} attempts, {result.get('blocked')} blocked; "
                           f"{result['leaks']} leaks"}
    return _attempt("worker_privilege", go)


def run_all(state, fuzz_messages: int, only: set[str] | None = None) -> dict:
    suites = {}
    for name, fn in (("fuzz", lambda: fuzz(state, fuzz_messages)), ("authz", lambda: authz(state)),
                     ("probe", lambda: probe(state)), ("worker_privilege", lambda: worker_privilege(state))):
        if only is not None and name not in only:
            suites[name] = {"status": "not run", "why": "not selected"}
            continue
        print(time.strftime("%H:%M:%S"), f"security suite {name} ...", flush=True)
        suites[name] = fn()
        print(time.strftime("%H:%M:%S"), f"  {name}: {suites[name].get('summary') or suites[name].get('why')}",
              flush=True)
    f = suites["fuzz"]
    internal = f["count"] if f["status"] == "ran" else "not run"
    ran = [n for n in LEAK_SUITES if suites[n]["status"] == "ran"]
    total = sum(suites[n]["count"] for n in ran)
    missing = [n for n in LEAK_SUITES if n not in ran]
    if not missing:
        leaks: int | str = total
    elif not ran:
        leaks = "not run"
    else:
        leaks = f"{total} (+ not run: {', '.join(missing)})"
    return {"internal_or_unknown": internal, "leaks": leaks, "suites": suites}

"""Job processes hold no privilege: a user's Python BMI model runs under a uid of its attempt's
own (services as root), with no capabilities, in a private 0700 job directory, and cannot read
the stack's keys and state, another job's directory, environment or processes, nor write
outside its job directory.

`check_worker_privilege(gateway, home, scratch)` runs the whole check against a running stack
and returns a summary with `leaks` (0 when nothing got through); `make chaos` calls it."""
from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import stat
import sys
import time
from pathlib import Path

import grpc
import pytest

from dmod.v1 import domain_pb2, jobs_pb2, jobs_pb2_grpc

S = jobs_pb2
HERE = Path(__file__).resolve().parent


def _helpers():
    path = HERE.parent / "jobs" / "helpers.py"
    spec = importlib.util.spec_from_file_location("dmod_tests_job_helpers", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


H = _helpers()


def _status(pid: int) -> dict[str, str]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        out[key] = value.strip()
    return out


def _workdir(pid: int) -> str:
    """The attempt's work directory a process runs in (workers are forked: their command line is
    the fork server's, their cwd tells)."""
    cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
    for d in (cwd, *cwd.parents):
        if d.name == "work" and d.parent.name.startswith("attempt-"):
            return str(d)
    return ""


def _job_family(job_id: str) -> list[dict]:
    """/proc facts of every live process of a job (worker agent, MPI launcher, ranks)."""
    seen = []
    for proc in H.job_processes(job_id):
        try:
            if "dmod.services.jobs.launchers.jobuser" in " ".join(proc.cmdline()):
                continue  # the launcher's own wrapper (no fork server), before it drops to the job's uid
            st = _status(proc.pid)
            seen.append({"pid": proc.pid, "cmd": " ".join(proc.cmdline())[:100], "workdir": _workdir(proc.pid),
                         "uid": [int(x) for x in st["Uid"].split()], "gid": [int(x) for x in st["Gid"].split()],
                         "groups": st.get("Groups", ""), "cap_eff": int(st["CapEff"], 16),
                         "cap_prm": int(st["CapPrm"], 16), "no_new_privs": st.get("NoNewPrivs", "")})
        except (OSError, KeyError, ValueError):
            continue
    return seen


def _stack_targets(home: Path, jobs_root: Path) -> tuple[list[str], list[str]]:
    """Every file and directory of the stack's home (but the jobs tree), for the probe to try."""
    files, dirs = [], [str(home), str(jobs_root)]
    for dirpath, dirnames, filenames in os.walk(home):
        if Path(dirpath) == jobs_root or jobs_root in Path(dirpath).parents:
            dirnames[:] = []
            continue
        dirnames[:] = [d for d in dirnames if Path(dirpath, d) != jobs_root]
        dirs += [str(Path(dirpath, d)) for d in dirnames]
        files += [str(Path(dirpath, f)) for f in filenames if not Path(dirpath, f).is_symlink()]
        for name in dirnames + filenames:  # data kept elsewhere (as root: Postgres under /var/lib/dmod)
            link = Path(dirpath, name)
            if link.is_symlink() and link.resolve().exists():
                dirs.append(str(link.resolve()))
                if link.resolve().parent != Path("/"):
                    dirs.append(str(link.resolve().parent))
    return sorted(set(files))[:400], sorted(set(dirs))[:200]


async def _running(jobs, name: str, timeout: float = 180.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        job = (await jobs.GetJob(S.GetJobRequest(name=name))).job
        assert job.state not in (S.JOB_STATE_FAILED, S.JOB_STATE_SUCCEEDED, S.JOB_STATE_CANCELLED), \
            (name, job.state_reason, job.state_message)
        if job.state == S.JOB_STATE_RUNNING and job.progress.step > 0:
            return
        assert loop.time() < deadline, f"{name} never ran"
        await asyncio.sleep(0.2)


async def _stop(jobs, name: str) -> None:
    try:
        await jobs.CancelJob(S.CancelJobRequest(name=name))
    except grpc.aio.AioRpcError:
        pass
    await H.wait_state(jobs, name, {S.JOB_STATE_CANCELLED, S.JOB_STATE_FAILED, S.JOB_STATE_SUCCEEDED})
    await H.no_job_processes(name.removeprefix("jobs/"))


async def check_worker_privilege(gateway: str, home: str | Path, scratch: str | Path) -> dict:
    """Run a victim job and an attacking job on the stack at `gateway` (whose $DMOD_HOME is
    `home`) and count what got through: every probe attempt that succeeded, every job process
    not under a job uid or holding a capability, a job directory that is not private, a key
    file that is not the services' 0600. Returns {"leaks": n, ...details}."""
    from dmod.local.stack import state_file
    from dmod.services.jobs.launchers import jobuser
    from dmod.services.jobs.launchers.local import jobs_root

    home, scratch = Path(home), Path(scratch)
    root = jobs_root(home, os.environ.get("DMOD_JOBS_WORK_DIR", ""))
    isolated = jobuser.isolating()
    problems: list[str] = []
    async with grpc.aio.insecure_channel(gateway) as channel:
        jobs = jobs_pb2_grpc.JobServiceStub(channel)
        domain = H.make_domain(scratch / "domain", catchments=6)
        for retry in range(3):  # S3 of a just started stack has answered 500 to a first PUT (not this test's subject)
            try:
                names = await H.upload_domain(channel, domain)
                break
            except Exception as exc:
                if retry == 2 or "INTERNAL" not in str(exc):
                    raise
                await asyncio.sleep(2)
        victim = (await jobs.CreateJob(S.CreateJobRequest(spec=H.job_spec(
            dict(names, realization=await H.upload_slow_realization(channel)), cpus=2)))).job.name
        attacker = ""
        try:
            await _running(jobs, victim)
            victim_procs = _job_family(victim.removeprefix("jobs/"))
            agent = next(p for p in victim_procs if p["workdir"])
            files, dirs = _stack_targets(home, root)
            for key in ("keys/jwt.key", "keys/jwt.pub"):
                if str(home / key) not in files and (home / key).exists():
                    files.append(str(home / key))
            files += [str(state_file(home)), "/etc/shadow"]
            targets = {"read": files, "list": dirs,
                       "write": [str(home / "probe"), str(root / "probe"), str(Path(sys.prefix) / "probe"),
                                 str(Path(agent["workdir"]).parent / "probe"), str(Path(agent["workdir"]).parent.parent / "probe")],
                       "victims": {p["workdir"] or agent["workdir"]: p["pid"] for p in victim_procs}}
            doc = H.realization()
            params = doc["global"]["formulations"][0]["params"]
            params.update({"model_type_name": "Probe", "python_type": "probemodel.Probe", "init_config": ""})
            real = await H.upload_dataset(channel, "probe-realization", domain_pb2.DATA_CATEGORY_CONFIG,
                                          domain_pb2.DATA_FORMAT_NGEN_REALIZATION_CONFIG,
                                          {"realization.json": json.dumps(doc).encode(),
                                           "probemodel.py": (HERE / "probemodel.py").read_bytes(),
                                           "probe-targets.json": json.dumps(targets).encode()})
            attacker = (await jobs.CreateJob(S.CreateJobRequest(spec=H.job_spec(dict(names, realization=real),
                                                                                cpus=1)))).job.name
            await _running(jobs, attacker)
            family = _job_family(attacker.removeprefix("jobs/"))
            victim_procs = _job_family(victim.removeprefix("jobs/"))
            workdir = Path(next(p["workdir"] for p in family if p["workdir"]))
            report_file = workdir / "run" / "probe-report.json"
            deadline = time.monotonic() + 60
            while not report_file.exists():
                assert time.monotonic() < deadline, "the probe model wrote no report"
                await asyncio.sleep(0.2)
            report = json.loads(report_file.read_text())
            # -- what the model tried
            got_through = [a for a in report["attempts"] if a["ok"]]
            problems += [f"{a['kind']} {a['what']}: {a['target']} ({a['got']})" for a in got_through]
            for c in report["scratch"]:
                if os.path.lexists(c["target"]):
                    problems.append(f"a write to {c['target']} reached the host")
                    os.unlink(c["target"])
            daemon = report["daemon_pid"]
            assert daemon and Path(f"/proc/{daemon}").exists(), "the probe's daemon did not start"
            failed_controls = [c for c in report["controls"] if not c["ok"]]
            assert not failed_controls, f"the job could not even use its own directory: {failed_controls}"
            assert report["victims"], "the probe found no other job to attack"
            # -- the processes of both jobs
            uids = {}
            for label, procs in (("attacker", family), ("victim", victim_procs)):
                assert len(procs) >= 2, (label, procs)  # the agent and at least its launcher/ranks
                for p in procs:
                    uid_ok = (len(set(p["uid"])) == 1 and jobuser.in_range(p["uid"][0])) if isolated else \
                        set(p["uid"]) == {os.geteuid()}
                    if not uid_ok:
                        problems.append(f"{label} pid {p['pid']} ({p['cmd']}) runs as uid {p['uid']}")
                    if p["cap_eff"] or p["cap_prm"]:
                        problems.append(f"{label} pid {p['pid']} has capabilities CapEff={p['cap_eff']:x} "
                                        f"CapPrm={p['cap_prm']:x}")
                    if isolated and (p["groups"] or p["no_new_privs"] != "1"):
                        problems.append(f"{label} pid {p['pid']} groups {p['groups']!r} NoNewPrivs {p['no_new_privs']}")
                    uids.setdefault(label, set()).add(p["uid"][0])
            if isolated and uids["attacker"] & uids["victim"]:
                problems.append(f"two jobs share a uid: {uids}")
            # -- the job directory and the key files
            st = os.lstat(workdir)
            if stat.S_IMODE(st.st_mode) != 0o700 or (isolated and st.st_uid not in uids["attacker"]):
                problems.append(f"job directory {workdir} is {oct(stat.S_IMODE(st.st_mode))} uid {st.st_uid}")
            for key in ("keys/jwt.key", "admin-password"):
                path = home / key
                if path.exists():
                    kst = os.stat(path)
                    if stat.S_IMODE(kst.st_mode) & 0o077 or kst.st_uid != os.geteuid():
                        problems.append(f"{path} is {oct(stat.S_IMODE(kst.st_mode))} uid {kst.st_uid}")
            if report["home"] != str(workdir) or not report["tmpdir"].startswith(str(workdir) + "/"):
                problems.append(f"HOME {report['home']} / TMPDIR {report['tmpdir']} not in {workdir}")
        finally:
            await _stop(jobs, victim)
            if attacker:
                await _stop(jobs, attacker)
        # -- after the attempt: its directory is the services' again, nothing runs under its uid
        if isolated:
            for _ in range(50):
                if os.lstat(workdir).st_uid == os.geteuid():
                    break
                await asyncio.sleep(0.1)
            st = os.lstat(workdir)
            if st.st_uid != os.geteuid():
                problems.append(f"{workdir} still owned by uid {st.st_uid} after the attempt")
            if Path(f"/proc/{daemon}").exists() and _status(daemon).get("State", "").split()[:1] != ["Z"]:
                problems.append(f"the job's daemon (pid {daemon}) outlived its attempt")
            for uid in uids["attacker"] | uids["victim"]:
                if jobuser.uids_pids(uid):
                    problems.append(f"processes left under uid {uid}: {jobuser.uids_pids(uid)}")
    return {"leaks": len(problems), "problems": problems, "isolated": isolated,
            "attempts": len(report["attempts"]), "blocked": len(report["attempts"]) - len(got_through),
            "processes": [{k: p[k] for k in ("pid", "cmd", "uid", "cap_eff")} for p in family + victim_procs],
            "report": report}


@pytest.fixture(scope="module")
def privilege_result(stack, tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("the services run as an ordinary user: jobs run as that user (no uid switch possible)")
    return asyncio.run(check_worker_privilege(stack.gateway, stack.home, tmp_path_factory.mktemp("privilege")))


def test_job_model_code_cannot_reach_secrets_other_jobs_or_root(privilege_result):
    r = privilege_result
    tried: dict[str, int] = {}
    for a in r["report"]["attempts"]:
        tried[f"{a['kind']} {a['what']}"] = tried.get(f"{a['kind']} {a['what']}", 0) + 1
    print(json.dumps({"leaks": r["leaks"], "attempts": r["attempts"], "blocked": r["blocked"], "tried": tried,
                      "scratch_writes_kept_private": [c["target"] for c in r["report"]["scratch"]],
                      "processes": r["processes"]}))
    assert r["leaks"] == 0, "\n".join(r["problems"])
    kinds = {(a["kind"], a["what"]) for a in r["report"]["attempts"]}
    # the probe really tried each of these (a probe that tried nothing would pass too)
    for wanted in [("read", "stack file"), ("list", "stack directory"), ("write", "outside the job directory"),
                   ("list", "another job's directory"), ("read", "another job's environment (its token)"),
                   ("signal", "another job's process"), ("escalate", "setuid(0)")]:
        assert wanted in kinds, wanted
    targets = {a["target"] for a in r["report"]["attempts"]}
    assert any(t.endswith("keys/jwt.key") for t in targets) and any(t.endswith("run/stack.json") for t in targets)
    assert r["attempts"] >= 20 and r["blocked"] == r["attempts"]


def test_job_processes_run_under_a_job_uid_without_capabilities(privilege_result):
    from dmod.services.jobs.launchers import jobuser

    report = privilege_result["report"]
    assert jobuser.in_range(report["uid"]) and report["groups"] == []
    assert report["status"]["CapEff"] == "0000000000000000" and report["status"]["NoNewPrivs"] == "1"
    procs = privilege_result["processes"]
    assert len(procs) >= 4
    for p in procs:
        assert p["cap_eff"] == 0 and len(set(p["uid"])) == 1 and jobuser.in_range(p["uid"][0]), p


def _ngenkit():
    path = HERE.parent / "ngen" / "ngenkit.py"
    spec = importlib.util.spec_from_file_location("dmod_tests_ngenkit", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_ngen_job_under_openmpi_runs_as_the_job_uid_without_run_as_root(stack, channel, tmp_path):
    """The real ngen (Open MPI): mpirun and every rank run under the attempt's uid with CapEff 0
    and without OMPI_ALLOW_RUN_AS_ROOT (mpirun needs no root override as the job's user)."""
    import shutil

    from dmod.jobs_client import parse_time
    from dmod.services.hydrofabric import synth
    from dmod.services.jobs.launchers import jobuser

    kit = _ngenkit()
    if kit.ngen_binary() is None:
        pytest.skip("no ngen binary")
    if os.geteuid() != 0:
        pytest.skip("the services run as an ordinary user")
    hours = 720
    manifest = synth(tmp_path / "hf", catchments=60, seed=5, hours=hours, forcing="csv")
    run = kit.make_run_dir(tmp_path / "run", Path(manifest["gpkg"]), tmp_path / "hf" / "forcing", hours=hours)
    (run / "lib").mkdir()
    shutil.copyfile(kit.test_model_library(), run / "lib" / "libtestbmicppmodel.so")
    doc = kit.test_model_realization(hours=hours, library="./lib/libtestbmicppmodel.so")
    forcing = {p.relative_to(run / "forcing").as_posix(): p.read_bytes() for p in sorted((run / "forcing").rglob("*.csv"))}
    library = {"lib/libtestbmicppmodel.so": (run / "lib" / "libtestbmicppmodel.so").read_bytes(),
               "config/test.ini": (run / "config" / "test.ini").read_bytes()}
    names = {
        "hydrofabric": await H.upload_dataset(channel, "hf", domain_pb2.DATA_CATEGORY_HYDROFABRIC,
                                              domain_pb2.DATA_FORMAT_NGEN_GEOPACKAGE_HYDROFABRIC,
                                              {"hydrofabric.gpkg": (run / "hydrofabric.gpkg").read_bytes()}),
        "forcing": await H.upload_dataset(channel, "forcing", domain_pb2.DATA_CATEGORY_FORCING,
                                          domain_pb2.DATA_FORMAT_AORC_CSV, forcing),
        "realization": await H.upload_dataset(channel, "realization", domain_pb2.DATA_CATEGORY_CONFIG,
                                              domain_pb2.DATA_FORMAT_NGEN_REALIZATION_CONFIG,
                                              {"realization.json": json.dumps(doc).encode()}),
        "bmi_library": await H.upload_dataset(channel, "models", domain_pb2.DATA_CATEGORY_CONFIG,
                                              domain_pb2.DATA_FORMAT_BMI_LIBRARY, library),
    }
    spec = S.JobSpec(hydrofabric_dataset=names["hydrofabric"], realization_dataset=names["realization"],
                     forcing_dataset=names["forcing"], bmi_library_dataset=names["bmi_library"], cpu_count=2,
                     engine="ngen")
    spec.start_time.FromDatetime(parse_time(doc["time"]["start_time"]))
    spec.end_time.FromDatetime(parse_time(doc["time"]["end_time"]))
    jobs = jobs_pb2_grpc.JobServiceStub(channel)
    job = (await jobs.CreateJob(S.CreateJobRequest(spec=spec))).job
    job_id = job.name.removeprefix("jobs/")
    seen: dict[int, dict] = {}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 300
    while job.state not in (S.JOB_STATE_SUCCEEDED, S.JOB_STATE_FAILED, S.JOB_STATE_CANCELLED):
        assert loop.time() < deadline, f"{job.name} still {S.JobState.Name(job.state)}"
        for p in _job_family(job_id):
            if p["pid"] not in seen:
                try:
                    env = Path(f"/proc/{p['pid']}/environ").read_bytes()
                except OSError:
                    continue
                p["run_as_root_override"] = b"OMPI_ALLOW_RUN_AS_ROOT" in env
                seen[p["pid"]] = p
        await asyncio.sleep(0.02)
        job = (await jobs.GetJob(S.GetJobRequest(name=job.name))).job
    assert job.state == S.JOB_STATE_SUCCEEDED, (job.state_reason, job.state_message)
    assert job.engine == "ngen"
    cmds = [p["cmd"] for p in seen.values()]
    assert any("mpirun" in c or "orterun" in c for c in cmds), cmds
    ranks = [p for p in seen.values() if p["cmd"].split()[0].endswith("/ngen") or "/ngen " in p["cmd"]]
    assert ranks, cmds
    uids = set()
    for p in seen.values():
        assert len(set(p["uid"])) == 1 and jobuser.in_range(p["uid"][0]), p
        assert p["cap_eff"] == 0 and p["cap_prm"] == 0 and p["no_new_privs"] == "1", p
        assert not p["run_as_root_override"], p
        uids.add(p["uid"][0])
    assert len(uids) == 1, uids


def test_services_as_an_ordinary_user_run_jobs_as_that_user(tmp_path):
    """Without root nothing can switch users: the launcher runs the job as the services' own user
    (no uid allocation, no chown), still in a 0700 directory under $DMOD_HOME/jobs."""
    import subprocess

    from dmod.services.jobs.launchers import jobuser

    if os.geteuid() != 0:
        pytest.skip("needs root to become an ordinary user for the check")
    nobody = 65534
    home = tmp_path / "home"
    home.mkdir(mode=0o711)
    os.chown(home, nobody, nobody)
    os.chmod(tmp_path, 0o711)
    code = f"""
import json, os, stat
from pathlib import Path
from dmod.services.jobs.launchers import jobuser
from dmod.services.jobs.launchers.local import LocalLauncher, attempt_dir, jobs_root
root = jobs_root({str(home)!r})
ident = jobuser.allocate(set())
folder = attempt_dir(root, "jobs/abc", 1)
LocalLauncher._prepare_dirs(folder, folder / "work", ident)
st = os.stat(folder / "work")
print(json.dumps({{"root": str(root), "ident": [ident.uid, ident.gid, ident.isolated], "isolating": jobuser.isolating(),
                   "work": [st.st_uid, oct(stat.S_IMODE(st.st_mode))],
                   "tmp": oct(stat.S_IMODE(os.stat(folder / "work" / "tmp").st_mode)),
                   "attempt": oct(stat.S_IMODE(os.stat(folder).st_mode))}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False,
                         cwd=str(home), env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home)},
                         preexec_fn=lambda: jobuser.become(nobody, nobody, 0, {}, str(home)))
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout)
    assert got["isolating"] is False and got["ident"] == [nobody, nobody, False]
    assert got["root"] == str(home / "jobs")
    assert got["work"] == [nobody, "0o700"] and got["tmp"] == "0o700" and got["attempt"] == "0o711"


def test_jobs_root_moves_out_of_a_home_the_job_uids_cannot_pass():
    """root's default home is under /root (0700): job directories then go to
    /var/lib/dmod/jobs/<hash of the home>, every part of it passable, none listable."""
    import shutil
    import tempfile

    from dmod.services.jobs.launchers import jobuser
    from dmod.services.jobs.launchers.local import jobs_root

    if os.geteuid() != 0:
        pytest.skip("jobs run as the services' user: any home works")
    base = Path(tempfile.mkdtemp(prefix="dmod-jobsroot-"))  # pytest's own tmp dirs are 0700
    root = None
    try:
        os.chmod(base, 0o711)
        closed = base / "closed"
        closed.mkdir(mode=0o700)
        open_home = base / "open"
        open_home.mkdir(mode=0o711)
        root = jobs_root(closed / "home")
        assert root.parent == jobuser.FALLBACK_ROOT and root == jobs_root(closed / "home")  # stable across restarts
        assert jobs_root(open_home) == open_home / "jobs"
        assert jobs_root(closed / "home", str(open_home / "elsewhere")) == open_home / "elsewhere"
        lo, _ = jobuser.uid_range()
        assert jobuser.passable(root, lo, -1) and not jobuser.passable(closed / "home", lo, -1)
        jobuser.passable_dir(root)
        for d in (root, root.parent, jobuser.FALLBACK_ROOT.parent):
            assert stat.S_IMODE(os.stat(d).st_mode) == 0o711, d
    finally:
        shutil.rmtree(base, ignore_errors=True)
        if root is not None and root.exists():
            os.rmdir(root)


def test_a_relaunched_attempt_gets_a_fresh_work_dir_and_the_old_one_is_locked():
    """Launching an attempt again (the scheduler crashed between launch and record) under a new
    uid: the old work/ is moved aside and handed to the services' user; the new one is the new
    uid's, 0700, with its TMPDIR."""
    import shutil
    import tempfile

    from dmod.services.jobs.launchers import jobuser
    from dmod.services.jobs.launchers.local import LocalLauncher, attempt_dir

    if os.geteuid() != 0:
        pytest.skip("one uid for every job without root")
    base = Path(tempfile.mkdtemp(prefix="dmod-relaunch-"))
    try:
        lo, _ = jobuser.uid_range()
        first, second = (jobuser.JobIdentity(lo + i, 65534, "x", True) for i in (11, 12))
        folder = attempt_dir(base / "jobs", "jobs/abc", 1)
        LocalLauncher._prepare_dirs(folder, folder / "work", first)
        (folder / "work" / "exit.json").write_text("{}")
        LocalLauncher._prepare_dirs(folder, folder / "work", second)
        st = os.stat(folder / "work")
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (second.uid, 65534, 0o700)
        assert os.stat(folder / "work" / "tmp").st_uid == second.uid
        assert not (folder / "work" / "exit.json").exists()
        aside = [p for p in folder.iterdir() if p.name.startswith("work.")]
        assert len(aside) == 1 and (aside[0] / "exit.json").exists()
        old = os.stat(aside[0])
        assert (old.st_uid, stat.S_IMODE(old.st_mode)) == (os.geteuid(), 0o700)
        for d in (base / "jobs", folder.parent, folder):
            assert stat.S_IMODE(os.stat(d).st_mode) == 0o711, d
    finally:
        shutil.rmtree(base, ignore_errors=True)

"""Every RPC × owner / other user / admin / another job's worker token / anonymous (auth required):
the expected code, never a leak, never INTERNAL (tests/security/authz.py)."""
from __future__ import annotations

from pathlib import Path

import pytest

from .authz import EXPECT, IDENTITIES, all_methods, auth_required_services, chaos_counts, run_matrix


def test_every_rpc_has_an_expectation():
    methods = all_methods()
    assert len(methods) >= 40
    missing = sorted(set(methods) - set(EXPECT))
    assert not missing, f"RPCs without an authorization expectation (add them to tests/security/authz.py): {missing}"
    assert not sorted(set(EXPECT) - set(methods)), "expectations for RPCs that no longer exist"
    for path, row in EXPECT.items():
        assert set(row) == set(IDENTITIES), path


@pytest.fixture(scope="module")
def anonymous_target(stack):
    with auth_required_services(stack.service_env()) as target:
        yield target


async def test_authorization_matrix(stack, anonymous_target, tmp_path):
    key = Path(stack.home, "keys/jwt.key").read_bytes()
    report = await run_matrix(stack.gateway, key, anonymous_target, workdir=tmp_path)
    print("\n" + report.table())
    print(report.counts())
    assert not report.missing
    assert report.counts()["identities"] == len(IDENTITIES)
    assert report.counts()["rpcs"] == len(all_methods())
    leaks = [c for c in report.calls if c.leak]
    assert not leaks, "\n".join(f"LEAK {c.method} as {c.identity}: {c.code} {c.detail}" for c in leaks)
    assert report.internal_or_unknown == 0, [c for c in report.calls if c.code in ("INTERNAL", "UNKNOWN")]
    assert not report.mismatches, "\n".join(
        f"{c.method} as {c.identity}: {c.code}, expected {sorted(c.expected)} {c.detail}" for c in report.mismatches)


async def test_chaos_entry_point(stack):
    """What `make chaos` calls: counts of a (here: one-RPC) matrix on a running stack."""
    counts = await chaos_counts(stack.gateway, stack.home, stack.service_env(),
                                only={"/dmod.v1.DatasetService/GetDataset"})
    assert counts["calls"] == len(IDENTITIES) and counts["leaks"] == 0 and counts["internal_or_unknown"] == 0
    assert counts["leaking_calls"] == [] and "DatasetService/GetDataset" in counts["table"]

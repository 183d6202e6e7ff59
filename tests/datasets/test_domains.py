"""Pure domain algebra, codecs, object paths and page tokens (no stack needed)."""
import datetime as dt

import pytest

from dmod.services.datasets import domain_codec, names, pagination
from dmod.services.datasets.domains import (
    ALL,
    CATCHMENT_ID,
    HYDROFABRIC_ID,
    TIME,
    Domain,
    DomainError,
    contains,
    domain,
    excess,
    merge,
    shortfalls,
    subtract,
    time_range,
)
from dmod.services.runtime.errors import InvalidArgument

DEC = time_range("2015-12-01", "2015-12-31")
FIRST_10 = time_range("2015-12-01", "2015-12-11")


def test_contains_time_and_ids():
    outer = domain(DEC, CATCHMENT_ID=["cat-1", "cat-2", "cat-3"])
    assert contains(outer, domain(FIRST_10, CATCHMENT_ID=["cat-1", "cat-3"]))
    assert not contains(outer, domain(time_range("2015-11-30", "2015-12-02")))
    assert not contains(outer, domain(CATCHMENT_ID=["cat-4"]))
    # begin inclusive, end exclusive: the same range is contained, one hour more is not
    assert contains(domain(DEC), domain(DEC))
    assert not contains(domain(DEC), domain(time_range("2015-12-01", "2015-12-31T01:00")))


def test_empty_values_mean_all_and_missing_index_is_unknown():
    assert contains(domain(CATCHMENT_ID=[]), domain(CATCHMENT_ID=["cat-9"]))
    assert not contains(domain(CATCHMENT_ID=["cat-9"]), domain(CATCHMENT_ID=[]))
    assert not contains(Domain(), domain(CATCHMENT_ID=["cat-9"]))
    assert contains(domain(DEC), Domain())


def test_shortfalls_explain():
    have = domain(FIRST_10, CATCHMENT_ID=[f"cat-{i}" for i in range(1, 5)], LENGTH=["2"])
    need = domain(DEC, CATCHMENT_ID=[f"cat-{i}" for i in range(1, 20)], LENGTH=["4"])
    reasons = shortfalls(have, need)
    assert reasons[0] == "time range 2015-12-01..2015-12-11 does not cover 2015-12-01..2015-12-31"
    assert "missing catchments cat-5, cat-6, cat-7, cat-8, cat-9 (+10 more)" in reasons
    assert "LENGTH 4 required, dataset has 2" in reasons
    assert shortfalls(Domain(), domain(HYDROFABRIC_ID=["abc"])) == [
        "no HYDROFABRIC_ID restriction in the dataset domain (coverage unknown)"]


def test_merge():
    a = domain(FIRST_10, CATCHMENT_ID=["cat-1"])
    b = domain(time_range("2015-12-11", "2015-12-31"), CATCHMENT_ID=["cat-2"], HYDROFABRIC_ID=["h"])
    m = merge(a, b)
    assert m.time() == DEC
    assert m.values(CATCHMENT_ID) == {"cat-1", "cat-2"}
    assert m.values(HYDROFABRIC_ID) == {"h"}
    assert merge(domain(CATCHMENT_ID=[]), domain(CATCHMENT_ID=["x"])).values(CATCHMENT_ID) == ALL
    with pytest.raises(DomainError, match="disjoint"):
        merge(domain(FIRST_10), domain(time_range("2015-12-20", "2015-12-21")))


def test_subtract():
    left = subtract(domain(DEC, CATCHMENT_ID=["cat-1", "cat-2"]), domain(FIRST_10, CATCHMENT_ID=["cat-2"]))
    assert left.time() == time_range("2015-12-11", "2015-12-31")
    assert left.values(CATCHMENT_ID) == {"cat-1"}
    assert subtract(domain(FIRST_10), domain(DEC)).is_empty()
    with pytest.raises(DomainError, match="two ranges"):
        subtract(domain(DEC), domain(time_range("2015-12-05", "2015-12-06")))
    with pytest.raises(DomainError):
        subtract(domain(CATCHMENT_ID=[]), domain(CATCHMENT_ID=["cat-1"]))


def test_excess_ranks_tighter_supersets_lower():
    need = domain(FIRST_10, CATCHMENT_ID=["cat-1"])
    tight = domain(FIRST_10, CATCHMENT_ID=["cat-1", "cat-2"])
    loose = domain(DEC, CATCHMENT_ID=["cat-1", "cat-2"])
    everything = domain(DEC, CATCHMENT_ID=[])
    assert excess(tight, need) < excess(loose, need) < excess(everything, need)
    assert excess(need, need) == 0


def test_proto_and_json_round_trip():
    d = domain(DEC, CATCHMENT_ID=["cat-10", "cat-9"], LENGTH=["4"], HYDROFABRIC_ID=[])
    pb = domain_codec.to_proto(d)
    assert list(pb.discrete[0].values) == ["cat-9", "cat-10"]  # natural order
    assert domain_codec.from_proto(pb) == d
    assert domain_codec.from_json(domain_codec.to_json(d)) == d


def test_proto_validation_names_fields():
    pb = domain_codec.to_proto(domain(DEC))
    pb.continuous[0].end_time.CopyFrom(pb.continuous[0].begin_time)
    pb.discrete.add(index=TIME, values=["x"])
    with pytest.raises(InvalidArgument) as err:
        domain_codec.from_proto(pb, "dataset.domain")
    fields = [f for f, _ in err.value.violations]
    assert fields == ["dataset.domain.continuous[0]", "dataset.domain.discrete[0].index"]


def test_time_bounds_are_utc():
    r = time_range(dt.datetime(2015, 12, 1), "2015-12-02T00:00:00+00:00")
    assert r.begin.tzinfo is not None and r.seconds == 86400


@pytest.mark.parametrize("path", ["../etc/passwd", "a/../../b", "/abs", "a//b", "a/./b", "a/", "", "a\x00b",
                                  "a\\b", "x" * 1025, "é" * 513])
def test_bad_object_paths(path):
    assert names.path_problem(path) is not None


@pytest.mark.parametrize("path", ["a", "forcing/cat-1.csv", "x" * 1024, "dir.with.dots/..hidden", "é" * 512])
def test_good_object_paths(path):
    assert names.path_problem(path) is None


def test_page_tokens_are_bound_to_their_query():
    token = pagination.encode(["2020-01-01", "id"], {"category": 1})
    assert pagination.decode(token, {"category": 1}) == ["2020-01-01", "id"]
    with pytest.raises(InvalidArgument):
        pagination.decode(token, {"category": 2})
    with pytest.raises(InvalidArgument):
        pagination.decode("garbage!", {"category": 1})


def test_listing_conversion_matches_the_general_one():
    """ListDatasets converts stored JSON straight to protobuf (no re-sort); same result."""
    import datetime as dt
    import random

    from dmod.services.datasets import domain_codec
    from dmod.services.datasets.domains import Domain, TimeRange

    rng = random.Random(3)
    for _ in range(20):
        ids = {f"cat-{rng.randint(1, 10_000)}" for _ in range(rng.randint(0, 120))}
        begin = dt.datetime(2015, 12, rng.randint(1, 20), tzinfo=dt.UTC)
        d = Domain({domain_codec._BY_NAME["TIME"]: TimeRange(begin, begin + dt.timedelta(days=3))},
                   {domain_codec._BY_NAME["CATCHMENT_ID"]: frozenset(ids)} if ids else {})
        for limit in (5, 50, 1000):
            assert domain_codec.json_to_proto(domain_codec.to_json(d), limit) == domain_codec.to_proto(d, limit)

import numpy as np

from dmod.services.hydrofabric.graph import euler_tour
from dmod.services.hydrofabric.refine import pieces, refine_partition


def brute_upstream(down, c):
    out = set()
    for x in range(len(down)):
        y = x
        while y >= 0:
            if y == c:
                out.add(x)
                break
            y = down[y]
    return out


def test_tour_slices_are_upstream_closures(synth_net):
    t = synth_net.tour
    down = synth_net.downstream_catchment
    for c in np.random.default_rng(1).choice(synth_net.n_catchments, 25, replace=False):
        assert set(t.upstream_slice(c).tolist()) == brute_upstream(down, c)
    assert np.array_equal(np.sort(t.order), np.arange(synth_net.n_catchments))


def test_tour_on_hand_forest():
    down = np.array([-1, 0, 0, 1, 2, -1, 5])
    t = euler_tour(down)
    assert t.order.tolist() == [0, 1, 3, 2, 4, 5, 6]
    assert t.size.tolist() == [5, 2, 2, 1, 1, 2, 1]
    assert t.depth.tolist() == [0, 1, 1, 2, 2, 0, 1]


def test_tour_survives_cycles():
    down = np.array([1, 2, 0, 0, -1, 4])  # 0 → 1 → 2 → 0, 3 → 0
    t = euler_tour(down)
    assert sorted(t.order.tolist()) == list(range(6))
    assert t.size[t.order[0]] == 4


def test_refinement_never_adds_cuts_and_respects_cap(synth_net):
    down = synth_net.tour.down
    rng = np.random.default_rng(0)
    part = rng.integers(0, 8, synth_net.n_catchments)
    c = np.flatnonzero(down >= 0)
    before = (part[c] != part[down[c]]).sum()
    new = refine_partition(down, part, 8, max_imbalance=1.05)
    after = (new[c] != new[down[c]]).sum()
    load = np.bincount(new, minlength=8)
    assert after < before
    assert load.max() <= max(1.05 * load.mean(), np.bincount(part, minlength=8).max())
    roots = pieces(down, new)
    assert np.all(new == new[roots])  # a piece is on one rank

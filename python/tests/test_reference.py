"""Checks of the brute-force reference itself against hand-computed cases, so that the
library tests compare with something known to follow SPEC.md."""
import math

import numpy as np
import pytest

import reference as ref

INF = math.inf


def video_1to9():
    """1 frame, 1 channel, 3x3 video holding 1..9 row by row: (1,1,1,3,3)."""
    return np.arange(1, 10, dtype=np.float64).reshape(1, 1, 1, 3, 3)


# ----------------------------------------------------------------------------- geometry
def test_reflect_once():
    assert ref.reflect(-1, 5) == 1
    assert ref.reflect(5, 5) == 3
    assert ref.reflect(2, 5) == 2
    assert ref.read_coord(-6, 5, True) is None  # still outside after one reflection
    assert ref.read_coord(-1, 5, False) is None
    assert ref.read_coord(-1, 1, True) is None  # L = 1: 1 is outside


def test_query_grid():
    # H=5, W=6, stride0=4: rows 0,4; cols 0,4
    assert ref.query_grid(2, 5, 6, 4) == [(0, 0, 0), (0, 0, 4), (0, 4, 0), (0, 4, 4),
                                          (1, 0, 0), (1, 0, 4), (1, 4, 0), (1, 4, 4)]


def test_frame_order():
    assert ref.frame_order(0, 4, 1) == [0, 1, 2]
    assert ref.frame_order(3, 4, 1) == [3, 2, 1]
    assert ref.frame_order(1, 4, 1) == [1, 2, 0]
    assert ref.frame_order(1, 3, 5) == [1, 2, 0]  # st = T
    assert ref.frame_order(2, 4, 0) == [2]


def test_window_axis_hand_values():
    # interior, full_ws on or off
    assert ref.window_axis(4, 9, 1, 3, True) == [3, 4, 5]
    assert ref.window_axis(4, 9, 1, 3, False) == [3, 4, 5]
    # left border: full_ws shifts the window inside, off keeps it centred
    assert ref.window_axis(0, 5, 1, 3, True) == [0, 1, 2]
    assert ref.window_axis(0, 5, 1, 3, False) == [-1, 0, 1]
    # right border: a0 = clamp(-1, -4, (4-4)//1 - 2 = -2) = -2
    assert ref.window_axis(4, 5, 1, 3, True) == [2, 3, 4]
    # even ws: half = 2, a = -2..1
    assert ref.window_axis(4, 9, 1, 4, True) == [2, 3, 4, 5]
    # window longer than the frame: hi < lo so a0 = -(c//s)
    assert ref.window_axis(1, 3, 1, 5, True) == [0, 1, 2, 3, 4]
    # stride 2: lo = -1, hi = 5//2 - 2 = 0, a0 = clamp(-1, -1, 0) = -1
    assert ref.window_axis(3, 9, 2, 3, True) == [1, 3, 5]
    # stride 2 at the right border: c=8, lo=-4, hi=0//2-2=-2 -> a0=-2
    assert ref.window_axis(8, 9, 2, 3, True) == [4, 6, 8]
    # ws = -1: the lattice of the whole axis
    assert ref.window_axis(3, 7, 3, -1, True) == [0, 3, 6]
    assert ref.window_axis(3, 7, 1, -1, False) == list(range(7))


def test_num_slots():
    p = ref.Params(ws=-1, wt=1, ps=1, k=0, stride1=2)
    assert ref.num_slots(p, 4, 5, 4) == 3 * 3 * 2
    p = ref.Params(ws=3, wt=3, ps=1, k=0)
    assert ref.num_slots(p, 2, 9, 9) == 2 * 9


# ----------------------------------------------------------------------------- forward
def test_single_frame_prod_all_candidates():
    vid = video_1to9()
    d, i = ref.nls(vid, vid, None, None, ws=3, wt=0, ps=1, k=-1, stride0=1)
    assert d.shape == (1, 1, 9, 9) and i.shape == (1, 1, 9, 9, 3) and i.dtype == np.int32
    # query 4 is the centre (value 5): distances 5*v, best first = 9..1
    np.testing.assert_array_equal(d[0, 0, 4], 5.0 * np.arange(9, 0, -1))
    expect = [(0, r, c) for r in (2, 1, 0) for c in (2, 1, 0)]
    np.testing.assert_array_equal(i[0, 0, 4], expect)


def test_single_frame_l2_corner_full_ws_on_off():
    vid = video_1to9()
    # query (0,0,0), value 1, ws=3: full_ws keeps the whole frame
    d, i = ref.nls(vid, vid, None, None, ws=3, wt=0, ps=1, k=-1, stride0=3, dist_type="l2")
    np.testing.assert_array_equal(d[0, 0, 0], [(v - 1.0) ** 2 for v in range(1, 10)])
    np.testing.assert_array_equal(i[0, 0, 0], [(0, r, c) for r in range(3) for c in range(3)])
    # full_ws off: rows/cols -1,0,1 -> 4 valid, 5 padded with +inf / -1
    d, i = ref.nls(vid, vid, None, None, ws=3, wt=0, ps=1, k=-1, stride0=3, dist_type="l2",
                   full_ws=False)
    np.testing.assert_array_equal(d[0, 0, 0], [0.0, 1.0, 9.0, 16.0] + [INF] * 5)
    np.testing.assert_array_equal(i[0, 0, 0, :4], [(0, 0, 0), (0, 0, 1), (0, 1, 0), (0, 1, 1)])
    assert (i[0, 0, 0, 4:] == -1).all()


def test_prod_padding_is_minus_inf():
    vid = video_1to9()
    d, i = ref.nls(vid, vid, None, None, ws=3, wt=0, ps=1, k=7, stride0=3, full_ws=False)
    # query (0,0,0) value 1: candidates 1,2,4,5 -> best 5,4,2,1 then padding
    np.testing.assert_array_equal(d[0, 0, 0], [5.0, 4.0, 2.0, 1.0, -INF, -INF, -INF])
    assert (i[0, 0, 0, 4:] == -1).all()


def test_patch_reflect_on_off():
    vid = video_1to9()
    v = vid[0, 0, 0]
    # query (0,0,0) against itself, ps=3: reflect reads rows/cols (1,0,1)
    d, _ = ref.nls(vid, vid, None, None, ws=1, wt=0, ps=3, k=1, stride0=3)
    expect = sum(v[r, c] ** 2 for r in (1, 0, 1) for c in (1, 0, 1))
    assert expect == 141.0
    assert d[0, 0, 0, 0] == expect
    # reflect off: outside pixels read 0, only rows/cols 0,1 count
    d, _ = ref.nls(vid, vid, None, None, ws=1, wt=0, ps=3, k=1, stride0=3, reflect_bounds=False)
    assert d[0, 0, 0, 0] == 1 + 4 + 16 + 25


def test_dilation_reflect_twice_outside():
    vid = video_1to9()
    # ps=3, dilation=2 at (0,0): offsets -2,0,2 -> reflect(-2)=2, 0, 2; still inside
    d, _ = ref.nls(vid, vid, None, None, ws=1, wt=0, ps=3, k=1, stride0=3, dilation=2)
    v = vid[0, 0, 0]
    assert d[0, 0, 0, 0] == sum(v[r, c] ** 2 for r in (2, 0, 2) for c in (2, 0, 2))
    # dilation=3: offsets -3,0,3 -> reflect(-3)=3 is outside a 3-wide frame -> 0; 3 -> 1
    d, _ = ref.nls(vid, vid, None, None, ws=1, wt=0, ps=3, k=1, stride0=3, dilation=3)
    assert d[0, 0, 0, 0] == sum(v[r, c] ** 2 for r in (0, 1) for c in (0, 1))


def test_use_adj_and_offsets():
    vid = video_1to9()
    v = vid[0, 0, 0]
    # use_adj, ps=3: offsets -2,-1,0 ; query (2,2) reads rows/cols 0..2 -> sum of squares
    d, _ = ref.nls(vid, vid, None, None, ws=1, wt=0, ps=3, k=1, stride0=2, use_adj=True)
    assert d[0, 0, 3, 0] == (v ** 2).sum()
    # ps=1, off_H0=1: the query reads row h-1; the candidate reads its own pixel
    d, i = ref.nls(vid, vid, None, None, ws=1, wt=0, ps=1, k=1, stride0=1, off_H0=1)
    assert d[0, 0, 4, 0] == v[0, 1] * v[1, 1]  # query (1,1) reads (0,1)
    np.testing.assert_array_equal(i[0, 0, 4, 0], (0, 1, 1))  # indices unchanged
    # off_W1=-1 with reflect off: candidate (0,2) reads column 3 -> outside -> 0
    d, _ = ref.nls(vid, vid, None, None, ws=1, wt=0, ps=1, k=1, stride0=1, off_W1=-1,
                   reflect_bounds=False)
    assert d[0, 0, 2, 0] == 0.0
    assert d[0, 0, 0, 0] == v[0, 0] * v[0, 1]


def test_time_patch_reflection():
    # T=2, pt=2: the query in frame 1 reads frames 1 and reflect(2) = 0
    vid = np.array([2.0, 3.0]).reshape(1, 2, 1, 1, 1)
    d, _ = ref.nls(vid, vid, None, None, ws=1, wt=0, ps=1, k=1, stride0=1, pt=2)
    assert d[0, 0, 0, 0] == 2 * 2 + 3 * 3
    assert d[0, 0, 1, 0] == 3 * 3 + 2 * 2
    d, _ = ref.nls(vid, vid, None, None, ws=1, wt=0, ps=1, k=1, stride0=1, pt=2,
                   reflect_bounds=False)
    assert d[0, 0, 1, 0] == 3 * 3


def flow_video():
    """3 frames of 5x5, frame u constant u+1; query pixel value 1 in frame 0."""
    vid = np.ones((1, 3, 1, 5, 5))
    for u in range(3):
        vid[0, u] = u + 1
    return vid


def test_flow_chaining_forward():
    vid = flow_video()
    fflow = np.zeros((1, 3, 2, 5, 5))
    fflow[0, 0, 0] = 1.4  # x
    fflow[0, 0, 1] = -0.6  # y
    # frame 1 flow read at the chained centre (1, 3) only; elsewhere it points away
    fflow[0, 1, 0] = -3.0
    fflow[0, 1, 1] = -3.0
    fflow[0, 1, 0, 1, 3] = 2.5
    fflow[0, 1, 1, 1, 3] = 0.2
    # (2,2) -> (floor(1.9), floor(3.9)) = (1,3) -> (floor(1.7), clamp(floor(6.0))) = (1,4)
    assert ref.centres(fflow, None, 0, 0, 2, 2, [0, 1, 2], 5, 5) == {0: (2, 2), 1: (1, 3), 2: (1, 4)}
    # the full search: ws=1, frames 0,1,2, prod with a query of value 1 -> frame 2 first
    d, i = ref.nls(vid, vid, fflow, None, ws=1, wt=2, ps=1, k=-1, stride0=2)
    q = 1 * 0 + 1 * 3 + 1  # (0, 2, 2) with nH = nW = 3
    np.testing.assert_array_equal(d[0, 0, q], [3.0, 2.0, 1.0])
    np.testing.assert_array_equal(i[0, 0, q], [(2, 1, 4), (1, 1, 3), (0, 2, 2)])


def test_flow_chaining_backward_and_rounding():
    bflow = np.zeros((1, 3, 2, 5, 5))
    bflow[0, 2, 0, 4, 4] = -0.5  # round(4 - 0.5) = floor(4.0) = 4 (halves round up)
    bflow[0, 2, 1, 4, 4] = -1.5  # round(4 - 1.5) = floor(3.0) = 3
    bflow[0, 1, 0, 3, 4] = -10.0  # clamp to 0
    bflow[0, 1, 1, 3, 4] = 0.49  # floor(3.99) = 3
    assert ref.centres(None, bflow, 0, 2, 4, 4, [2, 1, 0], 5, 5) == {2: (4, 4), 1: (3, 4), 0: (3, 0)}


def test_flow_non_finite_counts_as_zero():
    fflow = np.zeros((1, 3, 2, 5, 5))
    fflow[0, 0, 0, 2, 2] = np.nan
    fflow[0, 0, 1, 2, 2] = 1.0
    fflow[0, 1, 0, 3, 2] = np.inf
    fflow[0, 1, 1, 3, 2] = -np.inf
    assert ref.centres(fflow, None, 0, 0, 2, 2, [0, 1, 2], 5, 5) == {0: (2, 2), 1: (3, 2), 2: (3, 2)}


def test_frame_order_in_output_ties():
    # constant video: every distance ties, so indices follow canonical order exactly
    vid = np.ones((1, 3, 1, 4, 4))
    d, i = ref.nls(vid, vid, None, None, ws=3, wt=1, ps=1, k=-1, stride0=4)
    # query (1,0,0): frames 1, 2, 0; window rows/cols 0..2 (full_ws)
    q = 1
    expect = [(u, r, c) for u in (1, 2, 0) for r in range(3) for c in range(3)]
    np.testing.assert_array_equal(i[0, 0, q], expect)
    assert (d[0, 0, q] == 1.0).all()


def test_anchor_and_remove_self():
    vid = video_1to9()
    # query (0,0,0) value 1, prod: best others are 9, 8, ...; anchor puts self first
    d, i = ref.nls(vid, vid, None, None, ws=-1, wt=0, ps=1, k=3, stride0=3, anchor_self=True)
    np.testing.assert_array_equal(d[0, 0, 0], [1.0, 9.0, 8.0])
    np.testing.assert_array_equal(i[0, 0, 0], [(0, 0, 0), (0, 2, 2), (0, 2, 1)])
    # query (0,0,0) l2: self (0) would be best; remove_self drops it
    d, i = ref.nls(vid, vid, None, None, ws=-1, wt=0, ps=1, k=-1, stride0=3, remove_self=True,
                   dist_type="l2")
    np.testing.assert_array_equal(d[0, 0, 0], [1.0, 4.0, 9.0, 16.0, 25.0, 36.0, 49.0, 64.0, INF])
    assert (i[0, 0, 0, -1] == -1).all()
    # anchor_self with a query off the candidate lattice (stride1=2, ws=-1): still first
    vid5 = np.arange(25.0).reshape(1, 1, 1, 5, 5)
    d, i = ref.nls(vid5, vid5, None, None, ws=-1, wt=0, ps=1, k=2, stride0=1, stride1=2,
                   anchor_self=True)
    q = 1 * 5 + 1  # (0,1,1)
    np.testing.assert_array_equal(i[0, 0, q], [(0, 1, 1), (0, 4, 4)])
    np.testing.assert_array_equal(d[0, 0, q], [36.0, 6.0 * 24.0])
    with pytest.raises(ValueError):
        ref.nls(vid, vid, None, None, ws=3, wt=0, ps=1, k=1, anchor_self=True, remove_self=True)


def test_heads_and_6d():
    rng = np.random.default_rng(0)
    vid = rng.normal(size=(1, 2, 4, 5, 5))
    d, i = ref.nls(vid, vid[:, ::-1], None, None, ws=3, wt=1, ps=3, k=4, nheads=2, stride0=2)
    # head 1 uses channels 2,3 only
    d1, i1 = ref.nls(vid[:, :, 2:], vid[:, ::-1, 2:], None, None, ws=3, wt=1, ps=3, k=4, stride0=2)
    np.testing.assert_array_equal(d[:, 1:], d1)
    np.testing.assert_array_equal(i[:, 1:], i1)
    v6 = vid.reshape(1, 2, 2, 2, 5, 5).transpose(0, 2, 1, 3, 4, 5)
    w6 = vid[:, ::-1].reshape(1, 2, 2, 2, 5, 5).transpose(0, 2, 1, 3, 4, 5)
    d6, i6 = ref.nls(v6, w6, None, None, ws=3, wt=1, ps=3, k=4, nheads=2, stride0=2)
    np.testing.assert_array_equal(d, d6)
    np.testing.assert_array_equal(i, i6)


def test_k_too_large():
    vid = video_1to9()
    with pytest.raises(ValueError):
        ref.nls(vid, vid, None, None, ws=3, wt=0, ps=1, k=10)


def test_dists_at_matches_forward_and_backward_by_hand():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    vid0 = rng.normal(size=(2, 3, 2, 5, 6))
    vid1 = rng.normal(size=(2, 3, 2, 5, 6))
    fflow = rng.normal(scale=2.0, size=(2, 3, 2, 5, 6))
    bflow = rng.normal(scale=2.0, size=(2, 3, 2, 5, 6))
    kw = dict(nheads=2, stride0=2, dist_type="l2", pt=2, full_ws=False, dilation=2, off_H1=1)
    d, i = ref.nls(vid0, vid1, fflow, bflow, 3, 1, 3, -1, **kw)
    nh = kw.pop("nheads")
    dt, valid = ref.dists_at(torch.tensor(vid0), torch.tensor(vid1), i, 3, 1, 3, -1, nh, **kw)
    assert (valid.numpy() == (i[..., 0] >= 0)).all()
    np.testing.assert_allclose(dt.numpy()[valid.numpy()], d[valid.numpy()], rtol=1e-12)
    # ps=1, prod, one query, one candidate: d = a*b so dL/da = g*b, dL/db = g*a
    v = video_1to9()
    dd, ii = ref.nls(v, v * 2, None, None, 1, 0, 1, 1, stride0=3)
    g0, g1 = ref.grads(np.ones_like(dd), ii, v, v * 2, 1, 0, 1, 1, stride0=3)
    assert g0[0, 0, 0, 0, 0] == 2.0 and g1[0, 0, 0, 0, 0] == 1.0
    assert g0.sum() == 2.0 and g1.sum() == 1.0
    # reflected read: ps=3 at the corner reads (1,1) four times -> its gradient is 4*g*b
    dd, ii = ref.nls(v, np.ones_like(v), None, None, 1, 0, 3, 1, stride0=3)
    g0, _ = ref.grads(np.ones_like(dd), ii, v, np.ones_like(v), 1, 0, 3, 1, stride0=3)
    assert g0[0, 0, 0, 1, 1] == 4.0 and g0[0, 0, 0, 0, 0] == 1.0 and g0[0, 0, 0, 0, 1] == 2.0

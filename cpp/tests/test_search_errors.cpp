// Bad arguments throw stnls errors whose message names the argument.
#include <gtest/gtest.h>

#include <string>

#include "search_fixture.h"
#include "stnls/error.h"
#include "stnls/tile.h"

using namespace stnls;

namespace {
template <class E>
void expect_error(const SearchParams& p, std::vector<float>& vid, int64_t C, const std::string& name) {
  try {
    run_search(p, vid, 1, 2, C, 4, 4);
    FAIL() << "no error for " << name;
  } catch (const E& e) {
    EXPECT_EQ(std::string(e.what()).rfind(name + ":", 0), 0u) << e.what();
  }
}
}  // namespace

TEST(SearchErrors, NamesTheArgument) {
  std::vector<float> vid(2 * 6 * 16, 1.f);
  SearchParams p;
  p.ws = 3, p.wt = 1, p.ps = 3, p.k = 5;
  SearchParams q = p;
  q.nheads = 4;
  expect_error<ValueError>(q, vid, 6, "nheads");
  q = p, q.k = 3 * 3 * 2 + 1;
  expect_error<ValueError>(q, vid, 6, "k");
  q = p, q.ws = 0;
  expect_error<ValueError>(q, vid, 6, "ws");
  q = p, q.ps = 0;
  expect_error<ValueError>(q, vid, 6, "ps");
  q = p, q.anchor_self = q.remove_self = true;
  expect_error<ValueError>(q, vid, 6, "anchor_self");
  q = p, q.stride0 = 0;
  expect_error<ValueError>(q, vid, 6, "stride0");
}

TEST(SearchErrors, DtypeAndShape) {
  std::vector<int32_t> ivid(16, 1);
  SearchParams p;
  p.ws = 3, p.ps = 1, p.k = 2;
  ConstView v = make_view<const void>(ivid.data(), DType::Int32, {1, 1, 1, 4, 4});
  EXPECT_THROW(search_shape(p, v, v), TypeError);
  std::vector<float> a(16), b(32);
  ConstView va = make_view<const void>(a.data(), DType::Float32, {1, 1, 1, 4, 4});
  ConstView vb = make_view<const void>(b.data(), DType::Float32, {1, 2, 1, 4, 4});
  EXPECT_THROW(search_shape(p, va, vb), ValueError);
  ConstView v4 = make_view<const void>(a.data(), DType::Float32, {1, 1, 4, 4});
  EXPECT_THROW(search_shape(p, v4, v4), ValueError);
}

TEST(SearchErrors, NegativeStrideNamesTheArgument) {
  // A video walking its columns backwards (NumPy's a[..., ::-1]) is refused before any read.
  std::vector<float> a(16, 1.f);
  SearchParams p;
  p.ws = 3, p.ps = 1, p.k = 2;
  ConstView good = make_view<const void>(a.data(), DType::Float32, {1, 1, 1, 4, 4});
  ConstView flipped = good;
  flipped.data = a.data() + 3;
  flipped.strides[4] = -1;
  try {
    search_shape(p, flipped, good);
    FAIL() << "no error for a negative stride";
  } catch (const ValueError& e) {
    EXPECT_EQ(std::string(e.what()).rfind("vid0: expected non-negative strides along T, H and W", 0), 0u)
        << e.what();
  }
  EXPECT_NO_THROW(search_shape(p, good, good));
}

TEST(SearchErrors, OverlappingOutputsNameTheArgument) {
  // An output whose elements share memory (a zero stride, as torch's expand() makes, or
  // overlapping strides) is refused before any write; so is an overlapping gradient.
  std::vector<float> a(16, 1.f), d(64, 0.f), g(16, 0.f), g2(16, 0.f);
  std::vector<int32_t> ind(3 * 64, 0);
  SearchParams p;
  p.ws = 3, p.ps = 1, p.k = 2, p.stride0 = 1;
  ConstView v = make_view<const void>(a.data(), DType::Float32, {1, 1, 1, 4, 4});
  View dists = make_view<void>(d.data(), DType::Float32, {1, 1, 16, 2});
  View inds = make_view<void>(ind.data(), DType::Int32, {1, 1, 16, 2, 3});
  EXPECT_NO_THROW(search_forward(p, v, v, ConstView{}, ConstView{}, dists, inds));
  auto expect_named = [](const std::string& name, auto&& call) {
    try {
      call();
      FAIL() << "no error for an overlapping " << name;
    } catch (const ValueError& e) {
      EXPECT_EQ(std::string(e.what()).rfind(name + ": expected an output whose elements do not overlap", 0), 0u)
          << e.what();
    }
  };
  View broadcast = dists;
  broadcast.strides[2] = 0;  // every query writes the same two entries
  expect_named("dists", [&] { search_forward(p, v, v, ConstView{}, ConstView{}, broadcast, inds); });
  View packed = inds;
  packed.strides[3] = 1;  // neighbour k's (t, h, w) overlaps neighbour k+1's
  expect_named("inds", [&] { search_forward(p, v, v, ConstView{}, ConstView{}, dists, packed); });
  View gd = make_view<void>(d.data(), DType::Float32, {1, 1, 16, 2});
  View g0 = make_view<void>(g.data(), DType::Float32, {1, 1, 1, 4, 4});
  View g1 = make_view<void>(g2.data(), DType::Float32, {1, 1, 1, 4, 4});
  EXPECT_NO_THROW(search_backward(p, as_const(gd), as_const(inds), v, v, g0, g1));
  View rows = g1;
  rows.strides[3] = 1;  // rows overlap columns
  expect_named("grad_vid1", [&] { search_backward(p, as_const(gd), as_const(inds), v, v, g0, rows); });
}

TEST(SearchErrors, OverlappingFoldOutputIsRefused) {
  // fold adds patches into its output video: an expand()-ed output would sum them into
  // one pixel per broadcast row.
  std::vector<float> patches(16, 1.f), out(16, 0.f);
  TileParams p;  // ps = 1, stride0 = 1: patches (1, 16, 1, 1, 1, 1)
  ConstView pv = make_view<const void>(patches.data(), DType::Float32, {1, 16, 1, 1, 1, 1});
  View vid = make_view<void>(out.data(), DType::Float32, {1, 1, 1, 4, 4});
  EXPECT_NO_THROW(fold(p, pv, vid));
  View bcast = vid;
  bcast.strides[3] = 0;
  try {
    fold(p, pv, bcast);
    FAIL() << "no error for a broadcast fold output";
  } catch (const ValueError& e) {
    EXPECT_EQ(std::string(e.what()).rfind("vid: expected an output whose elements do not overlap", 0), 0u) << e.what();
  }
}

// Bad arguments throw stnls errors whose message names the argument.
#include <gtest/gtest.h>

#include <string>

#include "search_fixture.h"
#include "stnls/error.h"

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

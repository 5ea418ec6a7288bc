// The chunking rule of the deterministic CUDA backwards (common/chunking.h), on the host:
// which calls stay whole, how many heads a chunk takes, and that calls too large for int32
// list positions are split down to slices that fit.
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "common/chunking.h"

using stnls::detail::choose_chunking;
using stnls::detail::Chunking;
using stnls::detail::for_each_chunk;

namespace {
constexpr size_t MiB = size_t(1) << 20;

// Workspace of `heads` slices at `per_head` bytes each (whole call: all B*HD slices).
Chunking chunk(int64_t B, int64_t HD, int64_t pairs, int64_t pixels, size_t grads, size_t per_head) {
  return choose_chunking(
      B, HD, pairs, pixels, grads, [&] { return static_cast<size_t>(B * HD) * per_head; },
      [&](int64_t h) { return static_cast<size_t>(h) * per_head; });
}
}  // namespace

TEST(Chunking, SmallCallsStayWhole) {
  const Chunking c = chunk(2, 4, 1000, 1000, MiB, 8 * MiB);  // 64 MiB in all
  EXPECT_TRUE(c.whole);
  EXPECT_EQ(c.heads, 4);
  EXPECT_EQ(c.bytes, 64 * MiB);
  // Larger than 64 MiB but within the gradients' size: still whole.
  EXPECT_TRUE(chunk(2, 4, 1000, 1000, 100 * MiB, 10 * MiB).whole);
}

TEST(Chunking, ExtraBytesAllowedOnTopOfTheWholeLimit) {
  // 84 MiB in all: chunked against 64 MiB, whole with 47 MiB allowed on top (the search
  // backward's tap-split buffer), chunked again when the extra is not enough.
  auto run = [](size_t extra) {
    return choose_chunking(
        1, 2, 1000, 1000, 10 * MiB, [] { return 84 * MiB; }, [](int64_t h) { return static_cast<size_t>(h) * 42 * MiB; },
        extra);
  };
  EXPECT_FALSE(run(0).whole);
  const Chunking c = run(47 * MiB);
  EXPECT_TRUE(c.whole);
  EXPECT_EQ(c.heads, 2);
  EXPECT_EQ(c.bytes, 84 * MiB);
  EXPECT_FALSE(run(19 * MiB).whole);
  EXPECT_TRUE(run(20 * MiB).whole);
}

TEST(Chunking, LargeCallsTakeAsManyHeadsAsTheBudgetAllows) {
  // 3 x 5 slices of 7 MiB: 105 MiB > 64 MiB; chunks within max(16 MiB, G).
  Chunking c = chunk(3, 5, 1000, 1000, MiB, 7 * MiB);
  EXPECT_FALSE(c.whole);
  EXPECT_EQ(c.heads, 2);
  EXPECT_EQ(c.bytes, 14 * MiB);
  c = chunk(3, 5, 1000, 1000, 30 * MiB, 7 * MiB);  // budget = G = 30 MiB
  EXPECT_EQ(c.heads, 4);
  c = chunk(3, 5, 1000, 1000, MiB, 40 * MiB);  // a slice over the budget: one head anyway
  EXPECT_EQ(c.heads, 1);
  EXPECT_EQ(c.bytes, 40 * MiB);
  // One slice is never split.
  c = chunk(1, 1, 1000, 1000, MiB, 500 * MiB);
  EXPECT_TRUE(c.whole);
}

TEST(Chunking, Int32LimitSplitsCallsNotSlices) {
  // 4 heads of 1.2e9 pairs: 4.8e9 pairs do not fit int32, two heads do not either, one does.
  bool whole_asked = false;
  const Chunking c = choose_chunking(
      1, 4, int64_t(1200000000), 100, MiB,
      [&] {
        whole_asked = true;
        return size_t(0);
      },
      [&](int64_t h) { return static_cast<size_t>(h) * MiB; });
  EXPECT_FALSE(whole_asked);  // its layout would throw
  EXPECT_FALSE(c.whole);
  EXPECT_EQ(c.heads, 1);
  // Pixels count too.
  EXPECT_EQ(chunk(2, 3, 10, int64_t(900000000), MiB, MiB).heads, 2);
}

TEST(Chunking, EveryChunkOnceInOrder) {
  std::vector<int64_t> seen;
  for_each_chunk(2, 5, Chunking{2, false, 0}, [&](int64_t b, int64_t h0, int64_t nh) {
    seen.insert(seen.end(), {b, h0, nh});
  });
  EXPECT_EQ(seen, (std::vector<int64_t>{0, 0, 2, 0, 2, 2, 0, 4, 1, 1, 0, 2, 1, 2, 2, 1, 4, 1}));
}

// Host-side top-k selection of SPEC.md rule 6: best first, ties to the earlier candidate
// in canonical order. Candidates must be offered in canonical order, so a newcomer only
// displaces entries it beats strictly.
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "common/geometry.h"

namespace stnls {
namespace detail {

template <bool L2, class T>
class TopK {
 public:
  struct Entry {
    T d;
    int64_t id;  // canonical ordinal, or a caller's payload
  };

  void reset(int64_t k) {
    k_ = k;
    items_.clear();
    if (static_cast<int64_t>(items_.capacity()) < k) items_.reserve(k);
  }

  // Small k: keep a sorted list (insertion); large k: collect, sort once in finish().
  void offer(T d, int64_t id) {
    if (k_ <= 0) return;  // e.g. k = 1 with anchor_self: the anchor takes the only slot
    if (k_ > kSortedLimit) {
      items_.push_back({d, id});
      return;
    }
    int64_t n = static_cast<int64_t>(items_.size());
    if (n == k_) {
      if (!geo::better<L2>(d, items_[n - 1].d)) return;
      items_.pop_back();
      --n;
    }
    // Insert after every entry that is at least as good (they came earlier).
    int64_t pos = n;
    while (pos > 0 && geo::better<L2>(d, items_[pos - 1].d)) --pos;
    items_.insert(items_.begin() + pos, Entry{d, id});
  }

  // Best-first entries, at most k.
  const std::vector<Entry>& finish() {
    if (k_ > kSortedLimit) {
      auto cmp = [](const Entry& a, const Entry& b) {
        if (geo::better<L2>(a.d, b.d)) return true;
        if (geo::better<L2>(b.d, a.d)) return false;
        return a.id < b.id;
      };
      int64_t keep = std::min<int64_t>(k_, items_.size());
      std::partial_sort(items_.begin(), items_.begin() + keep, items_.end(), cmp);
      items_.resize(keep);
    }
    return items_;
  }

 private:
  static constexpr int64_t kSortedLimit = 64;
  int64_t k_ = 0;
  std::vector<Entry> items_;
};

}  // namespace detail
}  // namespace stnls

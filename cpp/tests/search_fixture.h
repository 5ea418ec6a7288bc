// Small helpers for the search tests: contiguous host videos and outputs as views.
#pragma once
#include <vector>

#include "stnls/search.h"

struct SearchRun {
  std::vector<float> dists;
  std::vector<int32_t> inds;
  stnls::SearchShape sh;
};

// Runs the CPU search on a contiguous [B, T, C, H, W] float32 video (vid1 = vid0 unless
// given) with optional flows [B, T, 2, H, W].
inline SearchRun run_search(const stnls::SearchParams& p, std::vector<float>& vid, int64_t B, int64_t T,
                            int64_t C, int64_t H, int64_t W, std::vector<float>* fflow = nullptr,
                            std::vector<float>* bflow = nullptr) {
  using namespace stnls;
  ConstView v = make_view<const void>(vid.data(), DType::Float32, {B, T, C, H, W});
  ConstView ff, bf;
  if (fflow) ff = make_view<const void>(fflow->data(), DType::Float32, {B, T, 2, H, W});
  if (bflow) bf = make_view<const void>(bflow->data(), DType::Float32, {B, T, 2, H, W});
  SearchRun r;
  r.sh = search_shape(p, v, v);
  r.dists.assign(r.sh.B * r.sh.HD * r.sh.Q * r.sh.K, -7.f);
  r.inds.assign(r.dists.size() * 3, -7);
  View d = make_view<void>(r.dists.data(), DType::Float32, {r.sh.B, r.sh.HD, r.sh.Q, r.sh.K});
  View i = make_view<void>(r.inds.data(), DType::Int32, {r.sh.B, r.sh.HD, r.sh.Q, r.sh.K, 3});
  search_forward(p, v, v, ff, bf, d, i);
  return r;
}

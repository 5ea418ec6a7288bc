// Patches (SPEC.md, "Patches"): unfold / fold on the query grid, and unfold_k / fold_k at
// the neighbour locations `inds` of a search. Each fold is the adjoint (and so the
// backward) of its unfold: <unfold(x), y> == <x, fold(y)>.
//
// Patch offsets are (pk, dilation*(pi - ps/2), dilation*(pj - ps/2)); a pixel outside the
// video is reflected once when reflect_bounds, otherwise (or if still outside) it reads 0
// and receives nothing. Shapes (any strides; float32 or float64; one device):
//   unfold:   vid [B, T, C, H, W]     -> patches [B, Q, pt, C, ps, ps]
//             vid [B, HD, T, C, H, W] -> patches [B, HD, Q, pt, C, ps, ps]
//   unfold_k: vid [B, T, C, H, W] (HD = inds.shape[1] heads split C) or [B, HD, T, C/HD, H, W],
//             inds [B, HD, Q, K, 3] int32 (-1 reads zeros)
//                                     -> patches [B, HD, Q, K, pt, C/HD, ps, ps]
// Q = T * nH * nW with nH = (H-1)/stride0 + 1 (search rule 1; only unfold/fold use stride0).
// fold and fold_k overwrite their video output.
#pragma once
#include <cstddef>

#include "stnls/view.h"

namespace stnls {

struct TileParams {
  int ps = 1;
  int stride0 = 1;
  int pt = 1;
  int dilation = 1;
  bool reflect_bounds = true;
  // fold_k on CUDA: sum in a fixed order (bitwise repeatable) instead of with atomics.
  bool deterministic = true;
};

void unfold(const TileParams& p, const ConstView& vid, const View& patches, void* stream = nullptr);
void fold(const TileParams& p, const ConstView& patches, const View& vid, void* stream = nullptr);
void unfold_k(const TileParams& p, const ConstView& vid, const ConstView& inds, const View& patches,
              void* stream = nullptr);
// Bytes of scratch fold_k needs on the data's device (0 when none). On CUDA with
// deterministic: the inverse lists, about 16 bytes per (query, neighbour) pair; a call
// needing more than max(64 MiB, the output's size) runs in chunks of (batch, head) slices
// and asks for one chunk's worth (as search_backward_workspace_size).
size_t fold_k_workspace_size(const TileParams& p, const ConstView& patches, const ConstView& inds,
                             const ConstView& vid);
void fold_k(const TileParams& p, const ConstView& patches, const ConstView& inds, const View& vid,
            void* workspace = nullptr, size_t workspace_bytes = 0, void* stream = nullptr);

}  // namespace stnls

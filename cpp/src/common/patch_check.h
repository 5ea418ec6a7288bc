// Internal: validation of the patch ops (patch_check.cpp), shared by every backend.
#pragma once
#include "common/patch_args.h"
#include "stnls/agg.h"
#include "stnls/tile.h"

namespace stnls {
namespace detail {

PatchArgs check_unfold(const TileParams& p, const ConstView& vid, const View& patches);
PatchArgs check_fold(const TileParams& p, const ConstView& patches, const View& vid);
PatchArgs check_unfold_k(const TileParams& p, const ConstView& vid, const ConstView& inds, const View& patches);
PatchArgs check_fold_k(const TileParams& p, const ConstView& patches, const ConstView& inds, const View& vid);
PatchArgs check_wpsum_inputs(const AggParams& p, const ConstView& vid, const ConstView& weights,
                             const ConstView& inds);
PatchArgs check_wpsum_forward(const AggParams& p, const ConstView& vid, const ConstView& weights,
                              const ConstView& inds, const View& out);
PatchArgs check_wpsum_backward(const AggParams& p, const ConstView& grad_out, const ConstView& vid,
                               const ConstView& weights, const ConstView& inds, const View& grad_vid,
                               const View& grad_weights);

}  // namespace detail
}  // namespace stnls

// Public entry points of the patch ops (tile.h): check once, then run on the data's device.
#include "stnls/tile.h"

#include "common/backends.h"
#include "common/check.h"
#include "common/patch_check.h"

namespace stnls {

namespace {
bool on_cuda(const detail::PatchArgs& a) { return a.device.kind == DeviceKind::CUDA; }
}  // namespace

void unfold(const TileParams& p, const ConstView& vid, const View& patches, void* stream) {
  detail::PatchArgs a = detail::check_unfold(p, vid, patches);
  if (on_cuda(a)) return cuda::unfold(a, stream);
  cpu::unfold(a);
}

void fold(const TileParams& p, const ConstView& patches, const View& vid, void* stream) {
  detail::PatchArgs a = detail::check_fold(p, patches, vid);
  if (on_cuda(a)) return cuda::fold(a, stream);
  cpu::fold(a);
}

void unfold_k(const TileParams& p, const ConstView& vid, const ConstView& inds, const View& patches,
              void* stream) {
  detail::PatchArgs a = detail::check_unfold_k(p, vid, inds, patches);
  if (on_cuda(a)) return cuda::unfold_k(a, stream);
  cpu::unfold_k(a);
}

size_t fold_k_workspace_size(const TileParams& p, const ConstView& patches, const ConstView& inds,
                             const ConstView& vid) {
  // Only shapes are checked here; nothing is written through this view.
  detail::PatchArgs a = detail::check_fold_k(p, patches, inds, detail::shape_of(vid));
  return on_cuda(a) ? cuda::fold_k_workspace_size(a) : 0;
}

void fold_k(const TileParams& p, const ConstView& patches, const ConstView& inds, const View& vid,
            void* workspace, size_t workspace_bytes, void* stream) {
  detail::PatchArgs a = detail::check_fold_k(p, patches, inds, vid);
  if (on_cuda(a)) return cuda::fold_k(a, workspace, workspace_bytes, stream);
  cpu::fold_k(a);
}

}  // namespace stnls

// Public entry points of the weighted patch sum (agg.h): check once, then run on the
// data's device.
#include "stnls/agg.h"

#include "common/backends.h"
#include "common/patch_check.h"

namespace stnls {

void wpsum_forward(const AggParams& p, const ConstView& vid, const ConstView& weights,
                   const ConstView& inds, const View& out, void* stream) {
  detail::PatchArgs a = detail::check_wpsum_forward(p, vid, weights, inds, out);
  if (a.device.kind == DeviceKind::CUDA) return cuda::wpsum_forward(a, stream);
  cpu::wpsum_forward(a);
}

size_t wpsum_backward_workspace_size(const AggParams& p, const ConstView& vid, const ConstView& weights,
                                     const ConstView& inds) {
  detail::PatchArgs a = detail::check_wpsum_inputs(p, vid, weights, inds);
  return a.device.kind == DeviceKind::CUDA ? cuda::wpsum_backward_workspace_size(a) : 0;
}

void wpsum_backward(const AggParams& p, const ConstView& grad_out, const ConstView& vid,
                    const ConstView& weights, const ConstView& inds, const View& grad_vid,
                    const View& grad_weights, void* workspace, size_t workspace_bytes, void* stream) {
  detail::PatchArgs a = detail::check_wpsum_backward(p, grad_out, vid, weights, inds, grad_vid, grad_weights);
  if (a.device.kind == DeviceKind::CUDA) return cuda::wpsum_backward(a, workspace, workspace_bytes, stream);
  cpu::wpsum_backward(a);
}

}  // namespace stnls

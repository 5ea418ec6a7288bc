// Public entry points of the non-local search: check the arguments once, then hand them
// to the backend of the data's device.
#include "stnls/search.h"

#include "common/backends.h"
#include "common/search_args.h"

namespace stnls {

size_t search_forward_workspace_size(const SearchParams& p, const ConstView& vid0, const ConstView& vid1) {
  detail::SearchArgs a = detail::check_search_forward_inputs(p, vid0, vid1);
  if (a.device.kind == DeviceKind::CUDA) return cuda::search_forward_workspace_size(a);
  return 0;
}

void search_forward(const SearchParams& p, const ConstView& vid0, const ConstView& vid1,
                    const ConstView& fflow, const ConstView& bflow, const View& dists,
                    const View& inds, void* workspace, size_t workspace_bytes, void* stream) {
  detail::SearchArgs a = detail::check_search_forward(p, vid0, vid1, fflow, bflow, dists, inds);
  if (a.device.kind == DeviceKind::CUDA) return cuda::search_forward(a, workspace, workspace_bytes, stream);
  cpu::search_forward(a);
}

void search_forward(const SearchParams& p, const ConstView& vid0, const ConstView& vid1,
                    const ConstView& fflow, const ConstView& bflow, const View& dists,
                    const View& inds, void* stream) {
  search_forward(p, vid0, vid1, fflow, bflow, dists, inds, nullptr, 0, stream);
}

size_t search_backward_workspace_size(const SearchParams& p, const ConstView& vid0,
                                      const ConstView& vid1, const ConstView& inds) {
  detail::SearchArgs a = detail::check_search_backward_inputs(p, inds, vid0, vid1);
  if (a.device.kind == DeviceKind::CUDA) return cuda::search_backward_workspace_size(a);
  return 0;
}

void search_backward(const SearchParams& p, const ConstView& grad_dists, const ConstView& inds,
                     const ConstView& vid0, const ConstView& vid1, const View& grad_vid0,
                     const View& grad_vid1, void* workspace, size_t workspace_bytes, void* stream) {
  detail::SearchArgs a =
      detail::check_search_backward(p, grad_dists, inds, vid0, vid1, grad_vid0, grad_vid1);
  if (a.device.kind == DeviceKind::CUDA)
    return cuda::search_backward(a, workspace, workspace_bytes, stream);
  cpu::search_backward(a);
}

}  // namespace stnls

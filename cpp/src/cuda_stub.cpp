// Built when the library is compiled without CUDA: the same API, and a clear error when
// CUDA memory reaches a CUDA entry point.
#include "common/backends.h"
#include "stnls/error.h"

namespace stnls {
namespace {
[[noreturn]] void no_cuda() {
  throw BackendError("vid0: got CUDA memory, but this build of stnls has no CUDA backend");
}
}  // namespace

bool cuda_available() { return false; }

namespace cuda {
size_t search_forward_workspace_size(const detail::SearchArgs&) { no_cuda(); }
void search_forward(const detail::SearchArgs&, void*, size_t, void*) { no_cuda(); }
size_t search_backward_workspace_size(const detail::SearchArgs&) { no_cuda(); }
void search_backward(const detail::SearchArgs&, void*, size_t, void*) { no_cuda(); }
size_t fold_k_workspace_size(const detail::PatchArgs&) { no_cuda(); }
size_t wpsum_backward_workspace_size(const detail::PatchArgs&) { no_cuda(); }
void unfold(const detail::PatchArgs&, void*) { no_cuda(); }
void fold(const detail::PatchArgs&, void*) { no_cuda(); }
void unfold_k(const detail::PatchArgs&, void*) { no_cuda(); }
void fold_k(const detail::PatchArgs&, void*, size_t, void*) { no_cuda(); }
void wpsum_forward(const detail::PatchArgs&, void*) { no_cuda(); }
void wpsum_backward(const detail::PatchArgs&, void*, size_t, void*) { no_cuda(); }
}  // namespace cuda
}  // namespace stnls

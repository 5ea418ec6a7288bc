// Internal: the entry points each backend provides, called by the dispatch in search.cpp
// after the arguments were checked.
#pragma once
#include <cstddef>

#include "common/patch_args.h"
#include "common/search_args.h"

namespace stnls {
namespace cpu {
void search_forward(const detail::SearchArgs& a);
void search_backward(const detail::SearchArgs& a);
void unfold(const detail::PatchArgs& a);
void fold(const detail::PatchArgs& a);
void unfold_k(const detail::PatchArgs& a);
void fold_k(const detail::PatchArgs& a);
void wpsum_forward(const detail::PatchArgs& a);
void wpsum_backward(const detail::PatchArgs& a);
}  // namespace cpu

namespace cuda {
size_t search_forward_workspace_size(const detail::SearchArgs& a);
void search_forward(const detail::SearchArgs& a, void* workspace, size_t workspace_bytes, void* stream);
size_t search_backward_workspace_size(const detail::SearchArgs& a);
void search_backward(const detail::SearchArgs& a, void* workspace, size_t workspace_bytes, void* stream);
size_t fold_k_workspace_size(const detail::PatchArgs& a);
size_t wpsum_backward_workspace_size(const detail::PatchArgs& a);
void unfold(const detail::PatchArgs& a, void* stream);
void fold(const detail::PatchArgs& a, void* stream);
void unfold_k(const detail::PatchArgs& a, void* stream);
void fold_k(const detail::PatchArgs& a, void* workspace, size_t workspace_bytes, void* stream);
void wpsum_forward(const detail::PatchArgs& a, void* stream);
void wpsum_backward(const detail::PatchArgs& a, void* workspace, size_t workspace_bytes, void* stream);
}  // namespace cuda
}  // namespace stnls

// Internal: the entry points each backend provides, called by the dispatch in search.cpp
// after the arguments were checked.
#pragma once
#include <cstddef>

#include "common/search_args.h"

namespace stnls {
namespace cpu {
void search_forward(const detail::SearchArgs& a);
void search_backward(const detail::SearchArgs& a);
}  // namespace cpu

namespace cuda {
void search_forward(const detail::SearchArgs& a, void* stream);
size_t search_backward_workspace_size(const detail::SearchArgs& a);
void search_backward(const detail::SearchArgs& a, void* workspace, size_t workspace_bytes, void* stream);
}  // namespace cuda
}  // namespace stnls

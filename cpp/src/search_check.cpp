// Argument checks of the non-local search, shared by the CPU and CUDA backends: every bad
// input is rejected here, before any kernel runs, with a message naming the argument.
#include <string>

#include "common/check.h"
#include "common/geometry.h"
#include "common/search_args.h"

namespace stnls {
namespace detail {
namespace {

void check_params(const SearchParams& p, bool window) {
  if (window) {
    if (!(p.ws == -1 || p.ws >= 1)) fail("ws", "-1 (whole frame) or >= 1", p.ws);
    if (p.wt < 0) fail("wt", ">= 0", p.wt);
  }
  if (p.ps < 1) fail("ps", ">= 1", p.ps);
  if (p.nheads < 1) fail("nheads", ">= 1", p.nheads);
  if (p.stride0 < 1) fail("stride0", ">= 1", p.stride0);
  if (p.stride1 < 1) fail("stride1", ">= 1", p.stride1);
  if (p.dilation < 1) fail("dilation", ">= 1", p.dilation);
  if (p.pt < 1) fail("pt", ">= 1", p.pt);
  if (p.dist_type != DistType::Prod && p.dist_type != DistType::L2)
    fail("dist_type", "prod or l2", static_cast<int>(p.dist_type));
  if (p.anchor_self && p.remove_self)
    fail("anchor_self", "not both anchor_self and remove_self", "both True");
}

// The video's sizes and its strides as [B, HD, T, C/HD, H, W].
void video_layout(const SearchParams& p, const std::string& name, const ConstView& v,
                  SearchShape& sh, Strides6& s) {
  if (v.ndim != 5 && v.ndim != 6)
    fail(name, "5 dimensions (B, T, C, H, W) or 6 (B, HD, T, C/HD, H, W)",
         std::to_string(v.ndim) + " dimensions " + shape_str(v));
  if (v.dtype != DType::Float32 && v.dtype != DType::Float64)
    fail<TypeError>(name, "float32 or float64", dtype_name(v.dtype));
  for (int i = 0; i < v.ndim; ++i)
    if (v.shape[i] < 1) fail(name, "no empty dimension", "shape " + shape_str(v));
  if (v.ndim == 5) {
    int64_t C = v.shape[2];
    if (C % p.nheads != 0)
      fail("nheads", "a divisor of the channel count C=" + std::to_string(C), p.nheads);
    sh.B = v.shape[0];
    sh.HD = p.nheads;
    sh.T = v.shape[1];
    sh.C = C / p.nheads;
    sh.H = v.shape[3];
    sh.W = v.shape[4];
    s = {v.strides[0], v.strides[2] * sh.C, v.strides[1], v.strides[2], v.strides[3], v.strides[4]};
  } else {
    if (v.shape[1] != p.nheads)
      fail("nheads", "the head dimension of the 6-d " + name + " (" + std::to_string(v.shape[1]) + ")",
           p.nheads);
    sh.B = v.shape[0];
    sh.HD = v.shape[1];
    sh.T = v.shape[2];
    sh.C = v.shape[3];
    sh.H = v.shape[4];
    sh.W = v.shape[5];
    s = {v.strides[0], v.strides[1], v.strides[2], v.strides[3], v.strides[4], v.strides[5]};
  }
  check_not_null(name, v);
  check_plane_strides(name, v);
}

void check_pair(const ConstView& vid0, const ConstView& vid1) {
  if (vid1.dtype != vid0.dtype)
    fail<TypeError>("vid1", std::string(dtype_name(vid0.dtype)) + " (the dtype of vid0)", dtype_name(vid1.dtype));
  bool same = vid0.ndim == vid1.ndim;
  for (int i = 0; same && i < vid0.ndim; ++i) same = vid0.shape[i] == vid1.shape[i];
  if (!same) fail("vid1", "the shape of vid0 " + shape_str(vid0), "shape " + shape_str(vid1));
  check_device("vid1", vid1, vid0.device);
}

void query_grid(const SearchParams& p, SearchShape& sh) {
  sh.nH = (sh.H - 1) / p.stride0 + 1;
  sh.nW = (sh.W - 1) / p.stride0 + 1;
  sh.Q = sh.T * sh.nH * sh.nW;
}

void check_flow(const std::string& name, const ConstView& f, const SearchShape& sh, const ConstView& vid0,
                Strides5& s) {
  s = {0, 0, 0, 0, 0};
  if (f.empty() && f.ndim == 0) return;  // zero flow
  check_shape(name, f, {sh.B, sh.T, 2, sh.H, sh.W});
  if (f.dtype != vid0.dtype)
    fail<TypeError>(name, std::string(dtype_name(vid0.dtype)) + " (the dtype of vid0)", dtype_name(f.dtype));
  check_device(name, f, vid0.device);
  check_not_null(name, f);
  s = {f.strides[0], f.strides[1], f.strides[2], f.strides[3], f.strides[4]};
}

void check_device_built(const ConstView& v) {
  if (v.device.kind == DeviceKind::CUDA && !cuda_available())
    throw BackendError("vid0: got CUDA memory, but this build of stnls has no CUDA backend");
  if (v.device.kind != DeviceKind::CPU && v.device.kind != DeviceKind::CUDA)
    fail<TypeError>("vid0", "cpu or cuda memory", static_cast<int>(v.device.kind));
}

}  // namespace

}  // namespace detail

SearchShape search_shape(const SearchParams& p, const ConstView& vid0, const ConstView& vid1) {
  using namespace detail;
  check_params(p, true);
  SearchShape sh;
  Strides6 s;
  video_layout(p, "vid0", vid0, sh, s);
  check_pair(vid0, vid1);
  query_grid(p, sh);
  sh.st = geo::frames(0, sh.T, p.wt).st;
  sh.wh = geo::window_slots(p.ws, sh.H, p.stride1);
  sh.ww = geo::window_slots(p.ws, sh.W, p.stride1);
  if (p.k > sh.slots())
    fail("k", "<= the number of candidates per query (" + std::to_string(sh.slots()) +
                  " = st*" + (p.ws < 0 ? std::string("ceil(H/stride1)*ceil(W/stride1)") : std::string("ws*ws")) + ")",
         p.k);
  sh.K = p.k > 0 ? p.k : sh.slots();
  return sh;
}

namespace detail {

SearchArgs check_search_forward_inputs(const SearchParams& p, const ConstView& vid0, const ConstView& vid1) {
  SearchArgs a{};
  a.p = p;
  a.sh = search_shape(p, vid0, vid1);
  check_device_built(vid0);
  video_layout(p, "vid0", vid0, a.sh, a.s0);
  video_layout(p, "vid1", vid1, a.sh, a.s1);
  a.dtype = vid0.dtype;
  a.device = vid0.device;
  a.vid0 = vid0.data;
  a.vid1 = vid1.data;
  return a;
}

SearchArgs check_search_forward(const SearchParams& p, const ConstView& vid0, const ConstView& vid1,
                                const ConstView& fflow, const ConstView& bflow, const View& dists,
                                const View& inds) {
  SearchArgs a = check_search_forward_inputs(p, vid0, vid1);
  check_flow("fflow", fflow, a.sh, vid0, a.sf);
  check_flow("bflow", bflow, a.sh, vid0, a.sb);
  const SearchShape& sh = a.sh;
  check_shape("dists", dists, {sh.B, sh.HD, sh.Q, sh.K});
  check_dtype("dists", dists, vid0.dtype);
  check_device("dists", dists, vid0.device);
  check_not_null("dists", dists);
  check_shape("inds", inds, {sh.B, sh.HD, sh.Q, sh.K, 3});
  check_dtype("inds", inds, DType::Int32);
  check_device("inds", inds, vid0.device);
  check_not_null("inds", inds);
  check_output_layout("dists", dists);
  check_output_layout("inds", inds);
  a.fflow = fflow.data;
  a.bflow = bflow.data;
  a.dists = dists.data;
  a.inds = inds.data;
  for (int i = 0; i < 4; ++i) a.sd[i] = dists.strides[i];
  for (int i = 0; i < 5; ++i) a.si[i] = inds.strides[i];
  return a;
}

SearchArgs check_search_backward_inputs(const SearchParams& p, const ConstView& inds,
                                        const ConstView& vid0, const ConstView& vid1) {
  SearchArgs a{};
  a.p = p;
  check_params(p, false);
  SearchShape& sh = a.sh;
  video_layout(p, "vid0", vid0, sh, a.s0);
  check_pair(vid0, vid1);
  video_layout(p, "vid1", vid1, sh, a.s1);
  check_device_built(vid0);
  query_grid(p, sh);
  if (inds.ndim != 5 || inds.shape[4] != 3)
    fail("inds", "shape (B, HD, Q, K, 3)", "shape " + shape_str(inds));
  sh.K = inds.shape[3];
  check_shape("inds", inds, {sh.B, sh.HD, sh.Q, sh.K, 3});
  check_dtype("inds", inds, DType::Int32);
  check_device("inds", inds, vid0.device);
  check_not_null("inds", inds);
  a.dtype = vid0.dtype;
  a.device = vid0.device;
  a.vid0 = vid0.data;
  a.vid1 = vid1.data;
  a.inds = const_cast<void*>(inds.data);
  for (int i = 0; i < 5; ++i) a.si[i] = inds.strides[i];
  return a;
}

SearchArgs check_search_backward(const SearchParams& p, const ConstView& grad_dists,
                                 const ConstView& inds, const ConstView& vid0, const ConstView& vid1,
                                 const View& grad_vid0, const View& grad_vid1) {
  SearchArgs a = check_search_backward_inputs(p, inds, vid0, vid1);
  const SearchShape& sh = a.sh;
  check_shape("grad_dists", grad_dists, {sh.B, sh.HD, sh.Q, sh.K});
  check_dtype("grad_dists", grad_dists, vid0.dtype);
  check_device("grad_dists", grad_dists, vid0.device);
  check_not_null("grad_dists", grad_dists);
  const char* gname[2] = {"grad_vid0", "grad_vid1"};
  const View* g[2] = {&grad_vid0, &grad_vid1};
  for (int i = 0; i < 2; ++i) {
    bool same = g[i]->ndim == vid0.ndim;
    for (int d = 0; same && d < vid0.ndim; ++d) same = g[i]->shape[d] == vid0.shape[d];
    if (!same) fail(gname[i], "the shape of vid0 " + shape_str(vid0), "shape " + shape_str(*g[i]));
    check_dtype(gname[i], *g[i], vid0.dtype);
    check_device(gname[i], *g[i], vid0.device);
    check_not_null(gname[i], *g[i]);
    check_output_layout(gname[i], *g[i]);
  }
  SearchShape tmp = sh;
  video_layout(p, "grad_vid0", as_const(grad_vid0), tmp, a.g0);
  video_layout(p, "grad_vid1", as_const(grad_vid1), tmp, a.g1);
  a.grad_dists = grad_dists.data;
  for (int i = 0; i < 4; ++i) a.sd[i] = grad_dists.strides[i];
  a.grad0 = grad_vid0.data;
  a.grad1 = grad_vid1.data;
  return a;
}

}  // namespace detail
}  // namespace stnls

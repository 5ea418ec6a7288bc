// Argument checks of the patch ops (tile.h, agg.h), shared by the CPU and CUDA backends:
// every bad input is rejected here with a message naming the argument.
#include "common/patch_check.h"

#include <string>

#include "common/check.h"
#include "stnls/search.h"

namespace stnls {
namespace detail {
namespace {

template <class P>
void copy_params(const P& p, PatchArgs& a) {
  if (p.ps < 1) fail("ps", ">= 1", p.ps);
  if (p.stride0 < 1) fail("stride0", ">= 1", p.stride0);
  if (p.pt < 1) fail("pt", ">= 1", p.pt);
  if (p.dilation < 1) fail("dilation", ">= 1", p.dilation);
  a.ps = p.ps, a.stride0 = p.stride0, a.pt = p.pt, a.dilation = p.dilation;
  a.reflect_bounds = p.reflect_bounds, a.deterministic = p.deterministic;
}

void check_float(const std::string& name, DType d) {
  if (d != DType::Float32 && d != DType::Float64)
    fail<TypeError>(name, "float32 or float64", dtype_name(d));
}

void check_built(const Device& d, const std::string& name) {
  if (d.kind == DeviceKind::CUDA && !cuda_available())
    throw BackendError(name + ": got CUDA memory, but this build of stnls has no CUDA backend");
}

// Sets sizes from the video (heads = HD for a 5-d video, or the 6-d head dimension) and
// returns its 6-d strides.
Strides6 video(PatchArgs& a, const std::string& name, const ConstView& v, int64_t heads) {
  if (v.ndim != 5 && v.ndim != 6)
    fail(name, "5 dimensions (B, T, C, H, W) or 6 (B, HD, T, C/HD, H, W)",
         std::to_string(v.ndim) + " dimensions " + shape_str(v));
  check_float(name, v.dtype);
  check_not_null(name, v);
  check_plane_strides(name, v);
  for (int i = 0; i < v.ndim; ++i)
    if (v.shape[i] < 1) fail(name, "no empty dimension", "shape " + shape_str(v));
  check_built(v.device, name);
  a.dtype = v.dtype;
  a.device = v.device;
  if (v.ndim == 5) {
    if (v.shape[2] % heads != 0)
      fail(name, "channels divisible by the " + std::to_string(heads) + " heads of inds",
           "C=" + std::to_string(v.shape[2]));
    a.B = v.shape[0], a.HD = heads, a.T = v.shape[1], a.C = v.shape[2] / heads;
    a.H = v.shape[3], a.W = v.shape[4];
    return {v.strides[0], v.strides[2] * a.C, v.strides[1], v.strides[2], v.strides[3], v.strides[4]};
  }
  // heads == 0: any head count (unfold/fold of a 6-d video).
  if (heads > 0 && v.shape[1] != heads)
    fail(name, "head dimension " + std::to_string(heads) + " (that of inds)", "shape " + shape_str(v));
  a.B = v.shape[0], a.HD = v.shape[1], a.T = v.shape[2], a.C = v.shape[3];
  a.H = v.shape[4], a.W = v.shape[5];
  return {v.strides[0], v.strides[1], v.strides[2], v.strides[3], v.strides[4], v.strides[5]};
}

// A second video-shaped tensor must match the first (shape, dtype, device).
template <class V>
Strides6 same_video(const PatchArgs& a, const std::string& name, const V& v, const ConstView& ref,
                    const std::string& ref_name) {
  bool same = v.ndim == ref.ndim;
  for (int i = 0; same && i < v.ndim; ++i) same = v.shape[i] == ref.shape[i];
  if (!same) fail(name, "the shape of " + ref_name + " " + shape_str(ref), "shape " + shape_str(v));
  if (v.dtype != a.dtype)
    fail<TypeError>(name, std::string(dtype_name(a.dtype)) + " (the dtype of " + ref_name + ")", dtype_name(v.dtype));
  check_device(name, v, a.device);
  check_not_null(name, v);
  check_plane_strides(name, v);
  if (v.ndim == 5) return {v.strides[0], v.strides[2] * a.C, v.strides[1], v.strides[2], v.strides[3], v.strides[4]};
  return {v.strides[0], v.strides[1], v.strides[2], v.strides[3], v.strides[4], v.strides[5]};
}

void query_grid(PatchArgs& a) {
  a.nH = (a.H - 1) / a.stride0 + 1;
  a.nW = (a.W - 1) / a.stride0 + 1;
  a.Q = a.T * a.nH * a.nW;
}

// inds [B, HD, Q, K, 3] int32: its head count (shape[1]) before the video is read.
int64_t inds_heads(const ConstView& inds) {
  if (inds.ndim != 5 || inds.shape[4] != 3)
    fail("inds", "shape (B, HD, Q, K, 3)", "shape " + shape_str(inds));
  check_dtype("inds", inds, DType::Int32);
  if (inds.shape[1] < 1) fail("inds", "at least one head", "shape " + shape_str(inds));
  return inds.shape[1];
}

void take_inds(PatchArgs& a, const ConstView& inds) {
  a.K = inds.shape[3];
  check_shape("inds", inds, {a.B, a.HD, a.Q, a.K, 3});
  check_device("inds", inds, a.device);
  check_not_null("inds", inds);
  a.inds = static_cast<const int32_t*>(inds.data);
  for (int i = 0; i < 5; ++i) a.si[i] = inds.strides[i];
}

template <class V>
void take_patches(PatchArgs& a, const std::string& name, const V& v, bool per_neighbour, bool six_d) {
  // unfold/fold: [B, Q, pt, C, ps, ps] (5-d video) or [B, HD, Q, pt, C, ps, ps] (6-d);
  // unfold_k/fold_k: [B, HD, Q, K, pt, C, ps, ps].
  if (per_neighbour) {
    check_shape(name, v, {a.B, a.HD, a.Q, a.K, a.pt, a.C, a.ps, a.ps});
    for (int i = 0; i < 8; ++i) a.sp[i] = v.strides[i];
  } else if (six_d) {
    check_shape(name, v, {a.B, a.HD, a.Q, a.pt, a.C, a.ps, a.ps});
    const int64_t s[8] = {v.strides[0], v.strides[1], v.strides[2], 0, v.strides[3], v.strides[4], v.strides[5], v.strides[6]};
    for (int i = 0; i < 8; ++i) a.sp[i] = s[i];
  } else {
    check_shape(name, v, {a.B, a.Q, a.pt, a.C, a.ps, a.ps});
    const int64_t s[8] = {v.strides[0], 0, v.strides[1], 0, v.strides[2], v.strides[3], v.strides[4], v.strides[5]};
    for (int i = 0; i < 8; ++i) a.sp[i] = s[i];
  }
  if (v.dtype != a.dtype)
    fail<TypeError>(name, std::string(dtype_name(a.dtype)) + " (the dtype of the video)", dtype_name(v.dtype));
  check_device(name, v, a.device);
  check_not_null(name, v);
}

// The video shape given to fold/fold_k as an output.
ConstView shape_only(const View& v) { return as_const(v); }

}  // namespace

PatchArgs check_unfold(const TileParams& p, const ConstView& vid, const View& patches) {
  PatchArgs a;
  copy_params(p, a);
  a.sv = video(a, "vid", vid, vid.ndim == 6 ? 0 : 1);
  query_grid(a);
  a.K = 1;
  take_patches(a, "patches", patches, false, vid.ndim == 6);
  check_output_layout("patches", patches);
  a.vid = vid.data;
  a.patches_out = patches.data;
  return a;
}

PatchArgs check_fold(const TileParams& p, const ConstView& patches, const View& vid) {
  PatchArgs a;
  copy_params(p, a);
  a.so = video(a, "vid", shape_only(vid), vid.ndim == 6 ? 0 : 1);
  check_output_layout("vid", vid);
  query_grid(a);
  a.K = 1;
  take_patches(a, "patches", patches, false, vid.ndim == 6);
  a.patches_in = patches.data;
  a.out = vid.data;
  return a;
}

PatchArgs check_unfold_k(const TileParams& p, const ConstView& vid, const ConstView& inds, const View& patches) {
  PatchArgs a;
  copy_params(p, a);
  a.sv = video(a, "vid", vid, inds_heads(inds));
  a.Q = inds.shape[2];  // any query set: unfold_k needs no query grid
  take_inds(a, inds);
  take_patches(a, "patches", patches, true, true);
  check_output_layout("patches", patches);
  a.vid = vid.data;
  a.patches_out = patches.data;
  return a;
}

PatchArgs check_fold_k(const TileParams& p, const ConstView& patches, const ConstView& inds, const View& vid) {
  PatchArgs a;
  copy_params(p, a);
  a.so = video(a, "vid", shape_only(vid), inds_heads(inds));
  check_output_layout("vid", vid);
  a.Q = inds.shape[2];  // any query set: fold_k needs no query grid
  take_inds(a, inds);
  take_patches(a, "patches", patches, true, true);
  a.patches_in = patches.data;
  a.out = vid.data;
  return a;
}

PatchArgs check_wpsum_inputs(const AggParams& p, const ConstView& vid, const ConstView& weights,
                             const ConstView& inds) {
  PatchArgs a;
  copy_params(p, a);
  a.sv = video(a, "vid", vid, inds_heads(inds));
  query_grid(a);
  take_inds(a, inds);
  check_shape("weights", weights, {a.B, a.HD, a.Q, a.K});
  if (weights.dtype != a.dtype)
    fail<TypeError>("weights", std::string(dtype_name(a.dtype)) + " (the dtype of vid)", dtype_name(weights.dtype));
  check_device("weights", weights, a.device);
  check_not_null("weights", weights);
  a.vid = vid.data;
  a.weights = weights.data;
  for (int i = 0; i < 4; ++i) a.sw[i] = weights.strides[i];
  return a;
}

PatchArgs check_wpsum_forward(const AggParams& p, const ConstView& vid, const ConstView& weights,
                              const ConstView& inds, const View& out) {
  PatchArgs a = check_wpsum_inputs(p, vid, weights, inds);
  a.so = same_video(a, "out", out, vid, "vid");
  check_output_layout("out", out);
  a.out = out.data;
  return a;
}

PatchArgs check_wpsum_backward(const AggParams& p, const ConstView& grad_out, const ConstView& vid,
                               const ConstView& weights, const ConstView& inds, const View& grad_vid,
                               const View& grad_weights) {
  PatchArgs a = check_wpsum_inputs(p, vid, weights, inds);
  a.sg = same_video(a, "grad_out", grad_out, vid, "vid");
  a.so = same_video(a, "grad_vid", grad_vid, vid, "vid");
  check_output_layout("grad_vid", grad_vid);
  check_shape("grad_weights", grad_weights, {a.B, a.HD, a.Q, a.K});
  check_dtype("grad_weights", grad_weights, a.dtype);
  check_device("grad_weights", grad_weights, a.device);
  check_not_null("grad_weights", grad_weights);
  check_output_layout("grad_weights", grad_weights);
  a.grad_out = grad_out.data;
  a.out = grad_vid.data;
  a.grad_weights = grad_weights.data;
  for (int i = 0; i < 4; ++i) a.sgw[i] = grad_weights.strides[i];
  return a;
}

}  // namespace detail
}  // namespace stnls

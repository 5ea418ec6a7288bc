// Binding of the patch ops (tile.h) and the weighted patch sum (agg.h): DLPack tensors in,
// checked views to the C++ API; the caller allocates outputs and workspaces.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>

#include "dlpack_view.h"
#include "stnls/agg.h"
#include "stnls/error.h"
#include "stnls/tile.h"

namespace stnls {
namespace py_bind {

namespace {
using Stream = std::optional<intptr_t>;
void* as_stream(Stream s) { return reinterpret_cast<void*>(s.value_or(0)); }

template <class P>
void bind_patch_params(py::class_<P>& c) {
  c.def(py::init<>())
      .def_readwrite("ps", &P::ps)
      .def_readwrite("stride0", &P::stride0)
      .def_readwrite("pt", &P::pt)
      .def_readwrite("dilation", &P::dilation)
      .def_readwrite("reflect_bounds", &P::reflect_bounds)
      .def_readwrite("deterministic", &P::deterministic);
}

}  // namespace

void bind_patches(py::module_& m) {
  py::class_<TileParams> tp(m, "TileParams", "Parameters of unfold/fold/unfold_k/fold_k.");
  bind_patch_params(tp);
  py::class_<AggParams> ap(m, "AggParams", "Parameters of the weighted patch sum.");
  bind_patch_params(ap);

  m.def(
      "unfold",
      [](const TileParams& p, py::handle vid, py::handle patches, Stream s) {
        Borrowed v = borrow(vid, "vid", s), o = borrow_output(patches, "patches", s);
        py::gil_scoped_release r;
        unfold(p, as_const(v.view), o.view, as_stream(s));
      },
      py::arg("params"), py::arg("vid"), py::arg("patches"), py::arg("stream") = py::none());
  m.def(
      "fold",
      [](const TileParams& p, py::handle patches, py::handle vid, Stream s) {
        Borrowed i = borrow(patches, "patches", s), o = borrow_output(vid, "vid", s);
        py::gil_scoped_release r;
        fold(p, as_const(i.view), o.view, as_stream(s));
      },
      py::arg("params"), py::arg("patches"), py::arg("vid"), py::arg("stream") = py::none());
  m.def(
      "unfold_k",
      [](const TileParams& p, py::handle vid, py::handle inds, py::handle patches, Stream s) {
        Borrowed v = borrow(vid, "vid", s), i = borrow(inds, "inds", s), o = borrow_output(patches, "patches", s);
        py::gil_scoped_release r;
        unfold_k(p, as_const(v.view), as_const(i.view), o.view, as_stream(s));
      },
      py::arg("params"), py::arg("vid"), py::arg("inds"), py::arg("patches"), py::arg("stream") = py::none());
  m.def(
      "fold_k_workspace_size",
      [](const TileParams& p, py::handle patches, py::handle inds, py::handle vid) {
        Borrowed a = borrow(patches, "patches", std::nullopt), i = borrow(inds, "inds", std::nullopt);
        Borrowed v = borrow(vid, "vid", std::nullopt);
        return fold_k_workspace_size(p, as_const(a.view), as_const(i.view), as_const(v.view));
      },
      py::arg("params"), py::arg("patches"), py::arg("inds"), py::arg("vid"));
  m.def(
      "fold_k",
      [](const TileParams& p, py::handle patches, py::handle inds, py::handle vid, py::handle workspace,
         Stream s) {
        Borrowed a = borrow(patches, "patches", s), i = borrow(inds, "inds", s);
        Borrowed o = borrow_output(vid, "vid", s), w = borrow(workspace, "workspace", s, true);
        auto ws = scratch(w, "the video", o);
        py::gil_scoped_release r;
        fold_k(p, as_const(a.view), as_const(i.view), o.view, ws.first, ws.second, as_stream(s));
      },
      py::arg("params"), py::arg("patches"), py::arg("inds"), py::arg("vid"), py::arg("workspace") = py::none(),
      py::arg("stream") = py::none());

  m.def(
      "wpsum_forward",
      [](const AggParams& p, py::handle vid, py::handle weights, py::handle inds, py::handle out, Stream s) {
        Borrowed v = borrow(vid, "vid", s), w = borrow(weights, "weights", s), i = borrow(inds, "inds", s);
        Borrowed o = borrow_output(out, "out", s);
        py::gil_scoped_release r;
        wpsum_forward(p, as_const(v.view), as_const(w.view), as_const(i.view), o.view, as_stream(s));
      },
      py::arg("params"), py::arg("vid"), py::arg("weights"), py::arg("inds"), py::arg("out"),
      py::arg("stream") = py::none());
  m.def(
      "wpsum_backward_workspace_size",
      [](const AggParams& p, py::handle vid, py::handle weights, py::handle inds) {
        Borrowed v = borrow(vid, "vid", std::nullopt), w = borrow(weights, "weights", std::nullopt);
        Borrowed i = borrow(inds, "inds", std::nullopt);
        return wpsum_backward_workspace_size(p, as_const(v.view), as_const(w.view), as_const(i.view));
      },
      py::arg("params"), py::arg("vid"), py::arg("weights"), py::arg("inds"));
  m.def(
      "wpsum_backward",
      [](const AggParams& p, py::handle grad_out, py::handle vid, py::handle weights, py::handle inds,
         py::handle grad_vid, py::handle grad_weights, py::handle workspace, Stream s) {
        Borrowed g = borrow(grad_out, "grad_out", s), v = borrow(vid, "vid", s);
        Borrowed w = borrow(weights, "weights", s), i = borrow(inds, "inds", s);
        Borrowed gv = borrow_output(grad_vid, "grad_vid", s), gw = borrow_output(grad_weights, "grad_weights", s);
        Borrowed ws = borrow(workspace, "workspace", s, true);
        auto scr = scratch(ws, "the video", v);
        py::gil_scoped_release r;
        wpsum_backward(p, as_const(g.view), as_const(v.view), as_const(w.view), as_const(i.view), gv.view, gw.view,
                       scr.first, scr.second, as_stream(s));
      },
      py::arg("params"), py::arg("grad_out"), py::arg("vid"), py::arg("weights"), py::arg("inds"),
      py::arg("grad_vid"), py::arg("grad_weights"), py::arg("workspace") = py::none(),
      py::arg("stream") = py::none());
}

}  // namespace py_bind
}  // namespace stnls

// Binding of the non-local search: DLPack tensors in, checked views to the C++ API. The
// caller (an adapter) allocates every output and the workspace.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <string>

#include "dlpack_view.h"
#include "stnls/error.h"
#include "stnls/search.h"

namespace stnls {
namespace py_bind {

namespace {

std::string dist_name(DistType d) { return d == DistType::L2 ? "l2" : "prod"; }

DistType parse_dist(const std::string& s) {
  if (s == "prod") return DistType::Prod;
  if (s == "l2") return DistType::L2;
  throw ValueError("dist_type: expected 'prod' or 'l2', got '" + s + "'");
}

void* as_stream(std::optional<intptr_t> s) { return reinterpret_cast<void*>(s.value_or(0)); }

}  // namespace

void bind_search(py::module_& m) {
  py::class_<SearchParams>(m, "SearchParams", "Parameters of the non-local search (SPEC.md).")
      .def(py::init<>())
      .def_readwrite("ws", &SearchParams::ws)
      .def_readwrite("wt", &SearchParams::wt)
      .def_readwrite("ps", &SearchParams::ps)
      .def_readwrite("k", &SearchParams::k)
      .def_readwrite("nheads", &SearchParams::nheads)
      .def_property(
          "dist_type", [](const SearchParams& p) { return dist_name(p.dist_type); },
          [](SearchParams& p, const std::string& s) { p.dist_type = parse_dist(s); })
      .def_readwrite("stride0", &SearchParams::stride0)
      .def_readwrite("stride1", &SearchParams::stride1)
      .def_readwrite("dilation", &SearchParams::dilation)
      .def_readwrite("pt", &SearchParams::pt)
      .def_readwrite("reflect_bounds", &SearchParams::reflect_bounds)
      .def_readwrite("full_ws", &SearchParams::full_ws)
      .def_readwrite("anchor_self", &SearchParams::anchor_self)
      .def_readwrite("remove_self", &SearchParams::remove_self)
      .def_readwrite("use_adj", &SearchParams::use_adj)
      .def_readwrite("off_H0", &SearchParams::off_H0)
      .def_readwrite("off_W0", &SearchParams::off_W0)
      .def_readwrite("off_H1", &SearchParams::off_H1)
      .def_readwrite("off_W1", &SearchParams::off_W1)
      .def_readwrite("deterministic", &SearchParams::deterministic);

  m.def(
      "search_shape",
      [](const SearchParams& p, py::handle vid0, py::handle vid1) {
        Borrowed v0 = borrow(vid0, "vid0", std::nullopt), v1 = borrow(vid1, "vid1", std::nullopt);
        SearchShape s = search_shape(p, as_const(v0.view), as_const(v1.view));
        py::dict d;
        d["B"] = s.B, d["HD"] = s.HD, d["T"] = s.T, d["C"] = s.C, d["H"] = s.H, d["W"] = s.W;
        d["nH"] = s.nH, d["nW"] = s.nW, d["Q"] = s.Q, d["st"] = s.st, d["K"] = s.K;
        // Answered here too, so that a forward asks the binding once before it runs.
        d["workspace"] = search_forward_workspace_size(p, as_const(v0.view), as_const(v1.view));
        return d;
      },
      py::arg("params"), py::arg("vid0"), py::arg("vid1"),
      "Checks the parameters against the videos; returns the sizes (B, HD, Q, K, ...) and "
      "the bytes of workspace search_forward can use (workspace).");

  m.def(
      "search_forward_workspace_size",
      [](const SearchParams& p, py::handle vid0, py::handle vid1) {
        Borrowed v0 = borrow(vid0, "vid0", std::nullopt), v1 = borrow(vid1, "vid1", std::nullopt);
        return search_forward_workspace_size(p, as_const(v0.view), as_const(v1.view));
      },
      py::arg("params"), py::arg("vid0"), py::arg("vid1"),
      "Bytes of device workspace search_forward can use (0: none).");

  m.def(
      "search_forward",
      [](const SearchParams& p, py::handle vid0, py::handle vid1, py::handle fflow, py::handle bflow,
         py::handle dists, py::handle inds, py::handle workspace, std::optional<intptr_t> stream) {
        Borrowed v0 = borrow(vid0, "vid0", stream), v1 = borrow(vid1, "vid1", stream);
        Borrowed ff = borrow(fflow, "fflow", stream), bf = borrow(bflow, "bflow", stream);
        Borrowed d = borrow_output(dists, "dists", stream), i = borrow_output(inds, "inds", stream);
        Borrowed w = borrow(workspace, "workspace", stream, /*raw=*/true);  // any dtype
        const auto ws = scratch(w, "vid0", v0);
        py::gil_scoped_release release;
        search_forward(p, as_const(v0.view), as_const(v1.view), as_const(ff.view), as_const(bf.view),
                       d.view, i.view, ws.first, ws.second, as_stream(stream));
      },
      py::arg("params"), py::arg("vid0"), py::arg("vid1"), py::arg("fflow"), py::arg("bflow"),
      py::arg("dists"), py::arg("inds"), py::arg("workspace") = py::none(), py::arg("stream") = py::none(),
      "Writes dists [B,HD,Q,K] and inds [B,HD,Q,K,3] (int32) in place.");

  m.def(
      "search_backward_workspace_size",
      [](const SearchParams& p, py::handle vid0, py::handle vid1, py::handle inds) {
        Borrowed v0 = borrow(vid0, "vid0", std::nullopt), v1 = borrow(vid1, "vid1", std::nullopt);
        Borrowed i = borrow(inds, "inds", std::nullopt);
        return search_backward_workspace_size(p, as_const(v0.view), as_const(v1.view), as_const(i.view));
      },
      py::arg("params"), py::arg("vid0"), py::arg("vid1"), py::arg("inds"),
      "Bytes of device workspace search_backward needs.");

  m.def(
      "search_backward",
      [](const SearchParams& p, py::handle grad_dists, py::handle inds, py::handle vid0, py::handle vid1,
         py::handle grad_vid0, py::handle grad_vid1, py::handle workspace, std::optional<intptr_t> stream) {
        Borrowed gd = borrow(grad_dists, "grad_dists", stream), i = borrow(inds, "inds", stream);
        Borrowed v0 = borrow(vid0, "vid0", stream), v1 = borrow(vid1, "vid1", stream);
        Borrowed g0 = borrow_output(grad_vid0, "grad_vid0", stream);
        Borrowed g1 = borrow_output(grad_vid1, "grad_vid1", stream);
        Borrowed w = borrow(workspace, "workspace", stream, /*raw=*/true);  // any dtype
        const auto ws = scratch(w, "vid0", v0);
        py::gil_scoped_release release;
        search_backward(p, as_const(gd.view), as_const(i.view), as_const(v0.view), as_const(v1.view), g0.view,
                        g1.view, ws.first, ws.second, as_stream(stream));
      },
      py::arg("params"), py::arg("grad_dists"), py::arg("inds"), py::arg("vid0"), py::arg("vid1"),
      py::arg("grad_vid0"), py::arg("grad_vid1"), py::arg("workspace") = py::none(),
      py::arg("stream") = py::none(),
      "Writes grad_vid0 and grad_vid1 (shapes of vid0/vid1) in place.");
}

}  // namespace py_bind
}  // namespace stnls

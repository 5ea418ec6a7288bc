// The Python module stnls._C: maps stnls errors to Python exceptions and registers the
// bindings of each op family.
#include <pybind11/pybind11.h>

#include "stnls/error.h"
#include "stnls/search.h"

namespace py = pybind11;

namespace stnls {
namespace py_bind {
void bind_search(py::module_& m);
void bind_patches(py::module_& m);
}
}  // namespace stnls

PYBIND11_MODULE(_C, m) {
  m.doc() = "stnls core: space-time non-local search on DLPack tensors";
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const stnls::ValueError& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const stnls::TypeError& e) {
      PyErr_SetString(PyExc_TypeError, e.what());
    } catch (const stnls::Error& e) {
      PyErr_SetString(PyExc_RuntimeError, e.what());
    }
  });
  m.def("cuda_available", &stnls::cuda_available, "True when this build has the CUDA backend.");
  stnls::py_bind::bind_search(m);
  stnls::py_bind::bind_patches(m);
}

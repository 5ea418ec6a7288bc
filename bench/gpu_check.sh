#!/usr/bin/env bash
# One GPU session: build for sm_90, run the CUDA GoogleTests (plus compute-sanitizer),
# the pytest suite on the GPU, and the CUDA benchmarks. Logs go to $OUT (or ./gpu_logs).
# Usage: bash bench/gpu_check.sh [tests|bench]   (default both; bench reuses the build)
set -uo pipefail
out="${OUT:-gpu_logs}"; mkdir -p "$out"
root="$(cd "$(dirname "$0")/.." && pwd)"; cd "$root"
export PYTHONUNBUFFERED=1 CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)"
nvidia-smi -L
what="${1:-all}"
if [[ "$what" != bench ]]; then
cmake -S . -B build/gpu -G Ninja -DSTNLS_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
  -DSTNLS_BUILD_TESTS=ON -DSTNLS_INSTALL=OFF > "$out/cmake.log" 2>&1 && cmake --build build/gpu >> "$out/cmake.log" 2>&1 \
  || { tail -30 "$out/cmake.log"; exit 1; }
STNLS_CUDA=ON CMAKE_ARGS=-DCMAKE_CUDA_ARCHITECTURES=90 python3 -m pip install --no-build-isolation --no-deps -q . \
  > "$out/pip.log" 2>&1 || { tail -30 "$out/pip.log"; exit 1; }
(cd build/gpu && ctest -j8 --output-on-failure > "$out/ctest.log" 2>&1); tail -3 "$out/ctest.log"
t=build/gpu/cpp/tests/stnls_tests
compute-sanitizer --tool memcheck "$t" --gtest_filter='SearchCuda*:*ps3_s2*:PatchesCudaSpecial.Strided*:PatchesCudaSpecial.Heavy*' > "$out/memcheck.log" 2>&1; tail -2 "$out/memcheck.log"
compute-sanitizer --tool racecheck "$t" --gtest_filter='SearchCuda*' > "$out/racecheck.log" 2>&1; tail -2 "$out/racecheck.log"
cd /tmp
python3 -m pytest -q -rs "$root/python/tests" -k "cuda or device" -p no:cacheprovider > "$out/pytest_cuda.log" 2>&1; tail -3 "$out/pytest_cuda.log"
fi
[[ "$what" == tests ]] && exit 0
cd /tmp
python3 "$root/bench/search_cuda.py" --json "$out/search_cuda.json" > "$out/search_cuda.log" 2>&1; tail -25 "$out/search_cuda.log"
python3 "$root/bench/attention.py" --device cuda --big --repeats 3 --json "$out/attention_cuda.json" > "$out/attention_cuda.log" 2>&1; tail -20 "$out/attention_cuda.log"

#!/usr/bin/env bash
# Same-run A/B of a base revision against the working tree on one GPU machine: both are
# built side by side (CMake for sm_90 + a pip install each), then the chosen steps run for
# base and new in turn, so the two are timed on the same GPU in the same call.
#   locally:    bash bench/gpu_ab.sh prepare REV   # exports REV into .ab_base/ (git-ignored)
#   on the GPU: OUT=$OUT bash bench/gpu_ab.sh run [tests] [timing] [attention] [breakdown] [host] [profile]
#               (device tool: carry [".ab_base", ".whl"])
#   tests      ctest of the new build (all CUDA GoogleTests)
#   timing     the search timing program (bench/search_cuda_timing.cpp), base and new
#   attention  bench/attention.py --device cuda (stnls and torch-local), base and new
#   breakdown  bench/attention_breakdown.py (kernel times and peak memory), base and new
#   host       bench/torch_call_breakdown.py (event, kernel and host time of S1/S2 calls
#              through torch and through the binding), base and new; then, new only, where
#              the host time of S1's forward and backward goes (torch profiler, cProfile)
#   profile    new build only: per-kernel times of one S1 and one S2 call (forward and
#              backward), and ncu SASS counters of the S1/S2 forwards summarised by
#              bench/sass_profile.py (instructions per query by opcode and by code stretch);
#              PROFILE_CFGS="S2 S4" picks other configurations
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"; cd "$root"
cmd="${1:-}"; shift || true
if [[ "$cmd" == prepare ]]; then
  rm -rf .ab_base && mkdir .ab_base && git archive "${1:-main}" | tar -x -C .ab_base
  echo "base $(git rev-parse --short "${1:-main}") in .ab_base"; exit 0
fi
[[ "$cmd" == run ]] || { echo "usage: $0 prepare REV | run [tests] [timing] [attention] [breakdown] [host] [profile]"; exit 2; }
out="${OUT:-gpu_logs}"; mkdir -p "$out"
export PYTHONUNBUFFERED=1
steps=" ${*:-tests timing attention breakdown} "
has() { [[ "$steps" == *" $1 "* ]]; }
nvidia-smi -L
if ls .whl/*.whl >/dev/null 2>&1; then  # wheels the GPU machine lacks (no internet there)
  python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/deps .whl/*.whl
fi
build() {  # build SRC NAME: CMake tree /tmp/ab/NAME/build, python package in /tmp/ab/NAME/site
  local src="$1" dir="/tmp/ab/$2"; mkdir -p "$dir"
  cmake -S "$src" -B "$dir/build" -G Ninja -DSTNLS_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
    -DSTNLS_BUILD_TESTS=ON -DSTNLS_INSTALL=OFF > "$dir/build.log" 2>&1 &&
    cmake --build "$dir/build" -j 8 >> "$dir/build.log" 2>&1 &&
    (cd "$src" && STNLS_CUDA=ON CMAKE_ARGS=-DCMAKE_CUDA_ARCHITECTURES=90 CMAKE_BUILD_PARALLEL_LEVEL=8 \
      python3 -m pip install --no-build-isolation --no-deps -q --target "$dir/site" . >> "$dir/build.log" 2>&1) ||
    { echo "build of $2 failed"; tail -30 "$dir/build.log"; return 1; }
}
build "$root/.ab_base" base & build "$root" new & wait
[[ -d /tmp/ab/base/site/stnls && -d /tmp/ab/new/site/stnls ]] || exit 1
py() { PYTHONPATH="/tmp/ab/$1/site:/tmp/deps" python3 "${@:2}"; }
if has tests; then
  (cd /tmp/ab/new/build && ctest -j 8 --output-on-failure > "$out/ctest.log" 2>&1); tail -3 "$out/ctest.log"
fi
for v in base new; do
  timing="$(find /tmp/ab/$v/build -name stnls_search_cuda_timing -type f | head -1)"
  if has timing && [[ -n "$timing" ]]; then echo "== timing $v"; "$timing" 20 2>&1 | tee "$out/timing_$v.log" | tail -12; fi
  if has attention; then
    echo "== attention $v"
    (cd /tmp && py "$v" "$root/bench/attention.py" --device cuda --methods stnls,torch-local --repeats 5 \
      --json "$out/attention_$v.json") > "$out/attention_$v.log" 2>&1; tail -8 "$out/attention_$v.log"
  fi
  if has breakdown; then
    echo "== breakdown $v"
    (cd /tmp && py "$v" "$root/bench/attention_breakdown.py") > "$out/breakdown_$v.log" 2>&1; tail -40 "$out/breakdown_$v.log"
  fi
  if has host; then
    echo "== host $v"
    (cd /tmp && py "$v" "$root/bench/torch_call_breakdown.py") > "$out/host_$v.log" 2>&1; tail -16 "$out/host_$v.log"
  fi
done
if has host; then
  for c in "S1:forward (no_grad)" "S1:backward" "S1:_C backward"; do
    (cd /tmp && py new "$root/bench/torch_call_breakdown.py" --configs S1 --profile "$c") > "$out/host_profile_${c//[^A-Za-z0-9]/_}.log" 2>&1
  done
fi
if has profile; then
  timing="$(find /tmp/ab/new/build -name stnls_search_cuda_timing -type f | head -1)"
  declare -A queries=([S1]=12288 [S2]=163840 [S3]=1310720 [S4]=409920)  # one warp per query: B*HD*Q
  for c in ${PROFILE_CFGS:-S1 S2}; do
    echo "== profile $c"
    ncu --metrics gpu__time_duration.sum --launch-count 20 "$timing" 1 "$c" > "$out/kernels_$c.log" 2>&1
    python3 "$root/bench/ncu_kernels.py" "$out/kernels_$c.log"
    ncu --kernel-name regex:search_forward --launch-skip 2 --launch-count 1 --section SourceCounters \
      -o "/tmp/ab/$c" "$timing" 1 "$c" > "$out/ncu_$c.log" 2>&1 &&
      ncu -i "/tmp/ab/$c.ncu-rep" --page source --csv --print-source sass > "$out/sass_$c.csv" 2>&1 &&
      python3 "$root/bench/sass_profile.py" "$out/sass_$c.csv" --items "${queries[$c]}" --min 100 | tee "$out/sass_$c.txt"
  done
  # The raw logs and SASS tables in one archive: the device tool returns only a few files.
  (cd "$out" && tar -czf profile_raw.tar.gz kernels_*.log ncu_*.log sass_*.csv 2>/dev/null &&
    rm -f kernels_*.log ncu_*.log sass_*.csv)
fi

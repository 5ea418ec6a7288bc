#!/usr/bin/env bash
# Checks the C++ install/export: builds the library (or reuses a given build tree),
# installs it into a temporary prefix, then builds and runs cpp/examples/find_package
# against that prefix through find_package(stnls).
#
# Usage: scripts/check_cpp_install.sh [BUILD_DIR] [extra CMake configure args...]
#   BUILD_DIR with a CMakeCache.txt is reused (its compiled library too; install rules
#   are switched on if off); otherwise it is configured with the extra args.
#   Without BUILD_DIR (or with "") a temporary tree is used.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/stnls-install-check.XXXXXX")"
trap 'rm -rf "$work"' EXIT

build="${1:-$work/build}"
shift || true
generator=()
command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)

if [[ -f "$build/CMakeCache.txt" ]]; then
  echo "check_cpp_install: reusing build tree $build"
  # A tree configured for the wheel has no install rules for the C++ package; turning them
  # on only regenerates the build files, nothing is recompiled.
  if ! grep -q '^STNLS_INSTALL:BOOL=ON' "$build/CMakeCache.txt"; then
    cmake -S "$root" -B "$build" -DSTNLS_INSTALL=ON
  fi
else
  echo "check_cpp_install: configuring $build"
  cmake -S "$root" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
    -DSTNLS_BUILD_TESTS=OFF -DSTNLS_INSTALL=ON "$@"
fi
# Only the library is needed here; a reused tree may also hold tests and the module.
cmake --build "$build" --target stnls --parallel "${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"

prefix="$work/prefix"
cmake --install "$build" --prefix "$prefix"
test -f "$prefix/include/stnls/search.h"
ls "$prefix"/lib*/cmake/stnls/stnlsConfig.cmake >/dev/null

example="$work/example"
cmake -S "$root/cpp/examples/find_package" -B "$example" "${generator[@]}" \
  -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix"
cmake --build "$example"
"$example/stnls_example"
echo "check_cpp_install: OK"

#!/usr/bin/env bash
# cibuildwheel's before-all for the Linux wheels (manylinux_2_28, an AlmaLinux 8 image): the
# CUDA compiler, the runtime (its static library: the wheel needs only the NVIDIA driver at
# run time) and the CUB/Thrust headers from NVIDIA's RHEL 8 repository, so that the wheels
# carry the CUDA backend for the architectures of STNLS_CUDA_ARCHITECTURES (CMakeLists.txt).
# STNLS_CUDA_VERSION picks the toolkit (default 13-0); it ends up at /usr/local/cuda.
set -euo pipefail
ver="${STNLS_CUDA_VERSION:-13-0}"
curl -fsSL -o /etc/yum.repos.d/cuda-rhel8.repo \
  https://developer.download.nvidia.com/compute/cuda/repos/rhel8/x86_64/cuda-rhel8.repo
dnf install -y "cuda-nvcc-$ver" "cuda-cudart-devel-$ver" "cuda-cccl-$ver"
ln -sfn "/usr/local/cuda-${ver/-/.}" /usr/local/cuda
/usr/local/cuda/bin/nvcc --version

#!/usr/bin/env bash
# Native tools the test suite needs besides the .NET SDK. Idempotent; .ci/run calls it first.
#  - clang++ (Debian package `clang`): the Metal emulation tests compile the .metal kernels as C++
#    against tests/Pipeline.Kernels.Metal.Tests/Emulation/Native/metal_shim.h.
set -euo pipefail

if command -v clang++ >/dev/null 2>&1; then
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-ci-deps: clang++ is missing and apt-get is not available; install clang (C++17) by hand." >&2
    exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends clang
clang++ --version | head -1

#!/usr/bin/env bash
# Fill .whl/ (git-ignored) with the wheels benchmarks/device_check.sh installs on a GPU machine
# that lacks them (no internet there): the exact versions of requirements/lock.txt (espnet:
# requirements/no-deps.txt), CPython 3.12 x86-64, --no-deps. torch/torchvision/torchaudio,
# nvidia-*, pytorch-lightning, sentencepiece, numpy etc. are in the GPU image already.
#   bash benchmarks/device_wheels.sh        # then carry ".whl" with the device tool
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
PACKAGES="hydra-core omegaconf antlr4-python3-runtime av espnet espeakng-loader"
version() {  # the lock's pin for Python >= 3.11 (or the unconditional one)
  local pin
  pin=$(grep -ihE "^$1==" requirements/lock.txt requirements/no-deps.txt \
        | grep -v "python_full_version < '3.11'" | head -1 | sed 's/ *;.*//')
  [ -n "$pin" ] || { echo "no pin for $1" >&2; exit 1; }
  echo "$pin"
}
mkdir -p .whl
for p in $PACKAGES; do
  pin=$(version "$p")
  echo "== $pin"
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --abi cp312 --abi abi3 --abi none \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux1_x86_64 --platform any -d .whl "$pin" 2>/dev/null \
  || "$PY" -m pip wheel -q --no-deps --no-build-isolation -w .whl "$pin" \
  || "$PY" -m pip wheel -q --no-deps -w .whl "$pin"  # pure-Python sdist (antlr4 4.9.3)
done
ls -la .whl
size=$(du -sm .whl | cut -f1)
echo "size of .whl: ${size} MiB (the device tool carries at most 64 MiB with the working tree)"
[ "$size" -lt 56 ] || { echo "warning: .whl is too large to carry with the tree" >&2; exit 1; }

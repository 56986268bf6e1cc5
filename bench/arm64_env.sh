#!/bin/bash
# Build the aarch64 emulation environment used by bench/arm64_check.py and bench/arm64_repro.py:
# a Debian (bookworm) arm64 python3.11 sysroot + aarch64 wheels, run with qemu-user.
#   bench/arm64_env.sh [TARGET_DIR=/tmp/arm] [ORT_VERSION=1.24.4]
# Idempotent: steps whose output exists are skipped. Needs root (apt), network, ~1.5 GB.
# Afterwards:  PYTHONPATH=TARGET/site:<repo> qemu-aarch64-static -cpu max -L TARGET/sysroot \
#                TARGET/sysroot/usr/bin/python3.11 -c 'import onnxruntime'
# Optional second onnxruntime (e.g. 1.27.0) as an overlay dir: ORT_OVERLAY=1.27.0 bench/arm64_env.sh
# puts it in TARGET/site127 (pass --ort-site TARGET/site127 to the bench scripts).
set -euo pipefail
T=${1:-/tmp/arm}
ORT=${2:-1.24.4}
PY=${PYTHON:-$(cd "$(dirname "$0")/.." && pwd)/.venv/bin/python}
mkdir -p "$T/debs" "$T/sysroot" "$T/home"
if ! command -v qemu-aarch64-static >/dev/null; then
  apt-get update && apt-get install -y qemu-user-static
fi
if [ ! -x "$T/sysroot/usr/bin/python3.11" ]; then
  dpkg --print-foreign-architectures | grep -qx arm64 || { dpkg --add-architecture arm64; apt-get update; }
  (cd "$T/debs" && apt-get download -o APT::Architecture=arm64 \
    python3.11:arm64 python3.11-minimal:arm64 libpython3.11-stdlib:arm64 libpython3.11-minimal:arm64 \
    libc6:arm64 libexpat1:arm64 zlib1g:arm64 libffi8:arm64 libssl3:arm64 libgcc-s1:arm64 libstdc++6:arm64 \
    libbz2-1.0:arm64 liblzma5:arm64 libsqlite3-0:arm64 libuuid1:arm64 libncursesw6:arm64 libtinfo6:arm64 \
    libreadline8:arm64 libdb5.3:arm64 libgdbm6:arm64 libnsl2:arm64 libtirpc3:arm64 libcrypt1:arm64 \
    libgssapi-krb5-2:arm64 libkrb5-3:arm64 libk5crypto3:arm64 libkrb5support0:arm64 libcom-err2:arm64 \
    libkeyutils1:arm64)
  for f in "$T"/debs/*.deb; do dpkg-deb -x "$f" "$T/sysroot"; done
fi
P="--platform manylinux_2_28_aarch64 --platform manylinux_2_27_aarch64 --platform manylinux_2_17_aarch64
   --platform manylinux2014_aarch64 --only-binary=:all: --python-version 3.11 --implementation cp"
if [ ! -d "$T/site/onnxruntime" ]; then
  # shellcheck disable=SC2086
  "$PY" -m pip download -d "$T/wheels" $P "onnxruntime==$ORT" numpy tokenizers click
  # shellcheck disable=SC2086
  "$PY" -m pip install $P --target "$T/site" --no-index --find-links "$T/wheels" \
    "onnxruntime==$ORT" numpy tokenizers click
fi
if [ -n "${ORT_OVERLAY:-}" ]; then
  D="$T/site$(echo "$ORT_OVERLAY" | cut -d. -f1-2 | tr -d .)"
  # shellcheck disable=SC2086
  [ -d "$D/onnxruntime" ] || "$PY" -m pip install $P --target "$D" --no-deps "onnxruntime==$ORT_OVERLAY"
fi
qemu-aarch64-static --version | head -1
PYTHONPATH="$T/site" HOME="$T/home" qemu-aarch64-static -cpu max -L "$T/sysroot" "$T/sysroot/usr/bin/python3.11" \
  -c "import onnxruntime, numpy, tokenizers; print('aarch64 ok: onnxruntime', onnxruntime.__version__)"

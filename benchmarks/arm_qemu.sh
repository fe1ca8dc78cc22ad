#!/usr/bin/env bash
# Functional ARM64 check on an x86 Linux host under qemu-user: the benchmark suite runs unmodified on aarch64
# (--quick), and the aarch64 upscaler's output stays within 2 LSB of this machine's.
#
# Needs root, Debian's qemu-user-static, binfmt-support and debootstrap, and network access to Debian and
# PyPI (aarch64 wheels). Usage: sudo bash benchmarks/arm_qemu.sh [ROOTFS]   (default /var/tmp/adabm-arm64)
# On a real ARM board run the suite directly instead:
#   pip install torch && pip install -e ".[test]" && pytest benchmarks/ --benchmark-json arm.json \
#       && python -m benchmarks.report arm.json -o docs/benchmarks_arm.md
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
SHARED=$(cd "$REPO/../shared" && pwd)
ROOT=${1:-/var/tmp/adabm-arm64}
IMAGE=data/benchmark/Set5/LR_bicubic/X4/babyx4.png

[ -e /proc/sys/fs/binfmt_misc/register ] || mount binfmt_misc -t binfmt_misc /proc/sys/fs/binfmt_misc
update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
if [ ! -x "$ROOT/usr/bin/python3" ]; then
    debootstrap --arch=arm64 --variant=minbase --include=python3,python3-venv,python3-pip bookworm "$ROOT" \
        http://deb.debian.org/debian
fi
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
cp /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/ca-certificates.crt"  # the host's CAs (proxies)
mkdir -p "$ROOT/opt/adabm-deploy" "$ROOT/opt/shared" "$ROOT/opt/out"
(cd "$REPO" && git ls-files -co --exclude-standard | tar -cf - -T -) | tar -xf - -C "$ROOT/opt/adabm-deploy"
mountpoint -q "$ROOT/opt/shared" || mount --bind -o ro "$SHARED" "$ROOT/opt/shared"
mountpoint -q "$ROOT/proc" || mount -t proc proc "$ROOT/proc"
trap 'umount "$ROOT/opt/shared" "$ROOT/proc" 2>/dev/null || true' EXIT

chroot "$ROOT" /bin/bash -euo pipefail -c '
    cd /opt/adabm-deploy
    uname -m
    [ -x /opt/venv/bin/python ] || python3 -m venv /opt/venv
    . /opt/venv/bin/activate
    pip install -q "torch>=2.2" && pip install -q -e ".[test]"
    python -m pytest benchmarks/ --quick --benchmark-disable -q -p no:cacheprovider
    python -m runtime.upscale /opt/shared/'"$IMAGE"' -o /opt/out/arm64.png --threads 1'

python -m runtime.upscale "$SHARED/$IMAGE" -o "$ROOT/opt/out/x86_64.png" --threads 1
python - "$ROOT/opt/out" <<'PY'
import sys
import cv2
import numpy as np
a, b = (cv2.imread(f"{sys.argv[1]}/{n}.png").astype(int) for n in ("arm64", "x86_64"))
d = np.abs(a - b)
print(f"aarch64 vs x86_64 output: max |diff| {d.max()} LSB, {100 * (d > 0).mean():.2f}% of values differ")
sys.exit(0 if d.max() <= 2 else 1)
PY

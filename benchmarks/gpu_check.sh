#!/usr/bin/env bash
# The GPU check: one prepared run (<= 10 minutes on one H100/H200), for whenever a session is lent
# a GPU machine. It runs the `gpu` tests, the Fourier heat map of the published cifar_fast net on
# 1,000 CIFAR-10 test images, the harness on a RobustBench-size grid (10,000 CIFAR-10 test images,
# PGD-10 at 3 Linf eps, bf16 forwards) against the forward+backward limit, and a 2-GPU torchrun
# where two GPUs are present; each part has its own timeout, and the figures go into
# benchmarks/RESULTS.md with the card's name.
#
# Data: the device machine sees only the checkout. Before the run, on the development machine:
#   mkdir -p gpu-data && cp ../shared/data/{cifar10-jpeg.tar.gz,mnist.pkl.gz,SHA256SUMS} gpu-data/
# and pass `gpu-data` in the run's carry list (it is git-ignored). Then, on the device machine:
#   pip install -e ".[dev]" -q && bash benchmarks/gpu_check.sh
# A CPU dry run of the same steps on small sizes: DRY=1 bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
export BANDGUARD_DATA="${BANDGUARD_DATA:-gpu-data}"
export BANDGUARD_WEIGHTS="${BANDGUARD_WEIGHTS:-examples/models}"
DEVICE=cuda; N_HEAT=1000; N_GRID=10000; BATCH=1000; WRITE=--write
if [ "${DRY:-0}" = 1 ]; then DEVICE=cpu; N_HEAT=8; N_GRID=64; BATCH=32; WRITE=; fi
status=0
step() { echo; echo "== $1"; }

step "gpu tests"
if [ "$DEVICE" = cuda ]; then
  timeout 180 python -m pytest -m gpu -q -p no:cacheprovider || status=1
else
  echo "skipped (DRY)"
fi

mkdir -p gpu-check
step "heat map: published cifar_fast, $N_HEAT CIFAR-10 test images, eps 4, bf16 forwards"
start=$(date +%s.%N)
timeout 150 python -m bandguard heatmap --model examples/models/cifar_fast.pt --dataset cifar10 \
  -n "$N_HEAT" --eps 4 --device "$DEVICE" --amp auto --out gpu-check/heatmap.png || status=1
heat_s=$(python -c "print(f'{$(date +%s.%N) - $start:.1f}')")
echo "heat map: $heat_s s"

step "harness: $N_GRID CIFAR-10 images, PGD-10 x 3 Linf eps, bf16, against the forward+backward limit"
timeout 200 python benchmarks/harness_gpu.py --arch cifar_fast --dataset cifar10 -n "$N_GRID" \
  --batch-size "$BATCH" --device "$DEVICE" --amp bf16 $WRITE || status=1

gpus=$(python -c "import torch; print(torch.cuda.device_count())")
step "torchrun over $gpus GPUs"
if [ "$gpus" -ge 2 ]; then
  cat > gpu-check/spec.toml <<TOML
dataset = "cifar10"
n = $N_GRID
device = "cuda"
amp = "auto"
out = "gpu-check/bench"
sanity = false
[[models]]
name = "cifar_fast"
reference = "cifar_fast"
[[attacks]]
attack = "pgd"
eps = [0.00784, 0.01569, 0.03137]
steps = 10
TOML
  start=$(date +%s.%N)
  timeout 150 torchrun --nproc_per_node=2 -m bandguard bench gpu-check/spec.toml -q || status=1
  echo "torchrun, 2 GPUs: $(python -c "print(f'{$(date +%s.%N) - $start:.1f}')") s"
else
  echo "one GPU: skipped"
fi

python - "$heat_s" "$N_HEAT" "$DEVICE" <<'PY'
import sys
from pathlib import Path

import torch

sys.path.insert(0, "benchmarks")
from _common import write_section

seconds, n, device = sys.argv[1], sys.argv[2], sys.argv[3]
card = torch.cuda.get_device_name() if device == "cuda" else "CPU dry run (not a GPU figure)"
text = (f"## GPU check: heat map\n\n`bash benchmarks/gpu_check.sh` on {card}: Fourier heat map of the "
        f"published `cifar_fast` net on {n} CIFAR-10 test images (eps 4, bf16 forwards, 514 frequencies): "
        f"{seconds} s wall, process start and loading included.\n")
print(text)
if device == "cuda":
    write_section("GPU check: heat map", text, Path("benchmarks/RESULTS.md"))
PY
exit $status

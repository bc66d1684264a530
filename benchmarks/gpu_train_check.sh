#!/usr/bin/env bash
# Training throughput on one GPU (≤ 5 minutes for LoVT and PRIOR, ≤ 4 more for the graph methods): LoVT and PRIOR (stages 1 and 3) at full size
# (ResNet-50 + BERT-base, global batch 8, 224 px), IGCL (CLIP ViT-B/32 + DRACON, batch 16) and
# graph-CT patch steps (3D CNN + per-landmark queue, 128 patches) on the real training loop, CUDA
# fp32 / fp16 (autocast + GradScaler) / bf16 autocast; prints images/s and the ratios of one run,
# then the graph-CT data path (patch-cache build per volume, MONAI augmentation) on the CPU.
#
#   bash benchmarks/gpu_train_check.sh            # from the repository root, with radzoo importable
#   PYTHON=.venv/bin/python STEPS=20 bash benchmarks/gpu_train_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
STEPS="${STEPS:-10}"
WARMUP="${WARMUP:-3}"
BATCH="${BATCH:-0}"  # 0 = each case's paper batch (8; IGCL 16; graph-CT 128 patches)
export PYTHONPATH="${PWD}/src${PYTHONPATH:+:$PYTHONPATH}"
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
fi
"$PYTHON" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
timeout 290 "$PYTHON" benchmarks/bench_train.py --device cuda --precisions 32,fp16,bf16 --procs 1 \
  --cases lovt,prior-stage1,prior-stage3 \
  --steps "$STEPS" --warmup "$WARMUP" --batch "$BATCH" --timeout 120 --json "${OUT:-/tmp}/gpu_train_check.json"
timeout 150 "$PYTHON" benchmarks/bench_train.py --device cuda --precisions 32,fp16,bf16 --procs 1 \
  --cases igcl,graphct-patch \
  --steps "$STEPS" --warmup "$WARMUP" --batch "$BATCH" --timeout 70 --json "${OUT:-/tmp}/gpu_train_check_graphs.json"
timeout 90 "$PYTHON" benchmarks/bench_graphct_data.py --volumes 2 --shape 160 320 320 --spacing 1.1 1.1 1.5

#!/usr/bin/env bash
# Training throughput on one GPU (≤ 5 minutes): LoVT and PRIOR (stages 1 and 3) at full size
# (ResNet-50 + BERT-base, global batch 8, 224 px) on the real training loop, CUDA fp32 / fp16
# (autocast + GradScaler) / bf16 autocast; prints images/s and the ratios of one run.
#
#   bash benchmarks/gpu_train_check.sh            # from the repository root, with radzoo importable
#   PYTHON=.venv/bin/python STEPS=20 bash benchmarks/gpu_train_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
STEPS="${STEPS:-10}"
WARMUP="${WARMUP:-3}"
BATCH="${BATCH:-8}"
export PYTHONPATH="${PWD}/src${PYTHONPATH:+:$PYTHONPATH}"
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
fi
"$PYTHON" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
timeout 290 "$PYTHON" benchmarks/bench_train.py --device cuda --precisions 32,fp16,bf16 --procs 1 \
  --steps "$STEPS" --warmup "$WARMUP" --batch "$BATCH" --timeout 120 --json "${OUT:-/tmp}/gpu_train_check.json"

#!/usr/bin/env bash
# The real ResNet-20 family side by side: fp32, 30% structured-pruned, and the int8 ONNX of each.
# Needs benchmarks/results/resnet20-cifar10/model.pt and benchmarks/results/resnet20-prune30/model.pt
# (BENCHMARKS.md sections 2 and 3). Usage: SLIMBENCH_DATA=../shared/data/cifar10 bash benchmarks/deploy_resnet20.sh
set -euo pipefail
B=benchmarks/results
SB=${SLIMBENCH:-.venv/bin/slimbench}
PY=${PYTHON:-.venv/bin/python}
$SB export $B/resnet20-cifar10/model.pt --int8 --out $B/deploy/resnet20-int8 --no-latency
$SB export $B/resnet20-prune30/model.pt --int8 --out $B/deploy/resnet20-prune30-int8 --no-latency
$SB export $B/resnet20-prune30/model.pt --out $B/deploy/resnet20-prune30-fp32
for m in resnet20-cifar10/model.pt resnet20-prune30/model.pt deploy/resnet20-int8/model.int8.onnx \
         deploy/resnet20-prune30-int8/model.int8.onnx; do
  echo "== score $m"; $SB score $B/$m
done
$PY benchmarks/deploy_latency.py fp32=$B/resnet20-cifar10/model.pt pruned30=$B/resnet20-prune30/model.pt \
  int8=$B/deploy/resnet20-int8/model.int8.onnx pruned30-int8=$B/deploy/resnet20-prune30-int8/model.int8.onnx \
  --batch-sizes 1,64 --repeats 200 --json $B/deploy/latency.json

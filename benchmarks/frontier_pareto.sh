#!/bin/bash
# The frontier Pareto table and plots: every model tried, under the three score rules (BENCHMARKS sections 23-33).
# Usage: SLIMBENCH_DATA=../shared/data/cifar10 bash benchmarks/frontier_pareto.sh   (from the repository, its venv active)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=benchmarks/results/frontier-prune30-sparse50
M=(
'BEST: KD parent: 30% + 40->70% sparse during w4a4, 15+8 ep (s32)=benchmarks/results/best/model.pt'
'its ONNX export (s32, best)=benchmarks/results/best/model.lowbit.onnx'
'KD parent: 30% + 40->70% sparse during w4a4, 15 ep (s32)=benchmarks/results/frontier-strongkd/sparse40-w4a4-e15-gradual70/model.pt'
'KD parent: 30% + 40->70% sparse during w3a3 (layers 2-3), 15 ep (s32)=benchmarks/results/frontier-strongkd/sparse40-w3a3-e15-gradual70/model.pt'
'KD parent: 30% + 40->70% sparse during w3a3 (layers 2-3), 15+8 ep (s33)=benchmarks/results/frontier-strongkd/sparse40-w3a3-e15-gradual70-more/model.pt'
'KD parent: 30% + 70% sparse (12 ep) + w4a4, 15+8 ep (s31)=benchmarks/results/frontier-strongkd/sparse70-ft12-w4a4-e15-more/model.pt'
'its ONNX export (s31, ft12 +8)=benchmarks/results/frontier-strongkd/sparse70-ft12-w4a4-e15-more-onnx/model.lowbit.onnx'
'KD parent: 30% + 70% sparse (12 ep) + w4a4, 15 ep (s31)=benchmarks/results/frontier-strongkd/sparse70-ft12-w4a4-e15/model.pt'
'its ONNX export (s31, ft12)=benchmarks/results/frontier-strongkd/sparse70-ft12-w4a4-e15-onnx/model.lowbit.onnx'
'KD parent: 30% + 70% sparse, 12 ep, fp32 (s31)=benchmarks/results/frontier-strongkd/sparse70-ft12/model.pt'
'KD parent: 30% + 70% sparse + w4a4, 15+8 ep (s31)=benchmarks/results/frontier-strongkd/sparse70-w4a4-e15-more/model.pt'
'its ONNX export (s31)=benchmarks/results/frontier-strongkd/sparse70-w4a4-e15-more-onnx/model.lowbit.onnx::benchmarks/results/frontier-strongkd/sparse70-w4a4-e15-more/model.pt'
'KD parent: 30% + 70% sparse + w4a4, 15 ep (s31)=benchmarks/results/frontier-strongkd/sparse70-w4a4-e15/model.pt'
'KD parent: 30% + 70% sparse, fp32 (s31)=benchmarks/results/frontier-strongkd/sparse70/model.pt'
'KD parent: 30% + 40% sparse, fp32 (s31)=benchmarks/results/frontier-strongkd/sparse40/model.pt'
'KD parent: 30% + 65% sparse, fp32 (s31)=benchmarks/results/frontier-strongkd/sparse65/model.pt'
'KD parent: pruned 30% r8 fp32 (s31)=benchmarks/results/frontier-strongkd/prune30-r8/model.pt'
'ResNet-20 strong, distilled from airnet-wide, fp32 (s29)=benchmarks/results/resnet20-strong-kd/model.pt'
'30% + 40% sparse, w3a3 in layers 2-3 from the w4a4 model, 15 ep (s30)=benchmarks/results/frontier-prune30-sparse40/w4a4-w3a3-e15/model.pt'
'30% + 50% sparse + w4a4, wide teacher, 15 ep (s28)=benchmarks/results/frontier-prune30-sparse50/w4a4-e15-wide/model.pt'
'30% + 50% sparse + w4a4, wide teacher, 15+8 ep (s28)=benchmarks/results/frontier-prune30-sparse50/w4a4-e15-wide-more/model.pt'
'30% + 40% sparse + w3a3 in layers 2-3, 15 ep (s27)=benchmarks/results/frontier-prune30-sparse40/w3a3-e15/model.pt'
'30% + 40% sparse + w4a4, 15+8 ep (s24)=benchmarks/results/frontier-prune30-sparse40/w4a4-e15-more/model.pt'
'its ONNX export (s24)=benchmarks/results/frontier-prune30-sparse40/w4a4-e15-more-onnx/model.lowbit.onnx::benchmarks/results/frontier-prune30-sparse40/w4a4-e15-more/model.pt'
'30% + 40% sparse + w4a4, 15 ep (s24)=benchmarks/results/frontier-prune30-sparse40/w4a4-e15/model.pt'
'30% + 50% sparse + w4a4 with EMA, 15 ep (s24; confounded, s33)=benchmarks/results/frontier-prune30-sparse50/w4a4-e15-ema/model.pt'
'30% + 50% sparse + w4a4, 6+8 ep (s23)=benchmarks/results/frontier-prune30-sparse50/w4a4-e6-more/model.pt'
'its ONNX export (s23)=benchmarks/results/frontier-prune30-sparse50/w4a4-e6-more-onnx/model.lowbit.onnx::benchmarks/results/frontier-prune30-sparse50/w4a4-e6-more/model.pt'
'30% + 50% sparse + w4a4, 15 ep (s23)=benchmarks/results/frontier-prune30-sparse50/w4a4-e15/model.pt'
'30% + 50% sparse + w4a4, 6 ep (s23)=benchmarks/results/frontier-prune30-sparse50/w4a4-e6/model.pt'
'airnet 50% + w4a4 (s22; confounded, s33)=benchmarks/results/frontier-airnet/w4a4/model.pt'
'50% long + 30% sparse + w4a4, 15+8 ep (s19)=benchmarks/results/frontier-long/w4a4-more/model.pt'
'50% + 30% sparse + w4a4, 15+8 ep (s15)=benchmarks/results/frontier-sparse30/w4a4-e15-more/model.pt'
'50% long + 30% sparse + w4a4 at lr 0.003 (s20)=benchmarks/results/frontier-long/w4a4-lowlr/model.pt'
'50% long + 30% sparse + w4a4, 2 layers at 8 bits (s20)=benchmarks/results/frontier-long/w4a4-protect/model.pt'
'pruned 30% r8 + w4a4, 6 ep (s9)=benchmarks/results/prune30-r8-w4a4/model.pt'
'pruned 30% r8 int8 ONNX=benchmarks/results/deploy/resnet20-prune30-r8-int8/model.int8.onnx'
'ResNet-20 int8 .tflite (s14)=benchmarks/results/litert/resnet20/tflite-int8/model.int8.tflite'
'30% + 40% sparse, fp32 (s24)=benchmarks/results/frontier-prune30-sparse40/sparse40/model.pt'
'30% + 50% sparse, fp32 (s23)=benchmarks/results/frontier-prune30-sparse50/sparse50/model.pt'
'50% long + 30% sparse, fp32 (s19)=benchmarks/results/frontier-long/sparse30/model.pt'
'airnet 50% pruned fp32 (s22)=benchmarks/results/frontier-airnet/prune50/model.pt'
'pruned 50% r8 fp32 (s9)=benchmarks/results/prune50-r8/model.pt'
'pruned 30% r8 fp32 (s5)=benchmarks/results/resnet20-prune30-r8/model.pt'
'airnet fp32, 40 ep (s22)=benchmarks/results/frontier-airnet/airnet-long/model.pt'
'airnet fp32, 15 ep, lr 0.16 (s18)=benchmarks/results/fast-recipe/fastK/model.pt'
'ResNet-20 strong fp32 (s16)=benchmarks/results/resnet20-strong/model.pt'
'ResNet-20 fp32 (s2)=benchmarks/results/resnet20-cifar10/model.pt'
)
python benchmarks/frontier_table.py "${M[@]}" --json $OUT/pareto.json > $OUT/pareto.md
PATHS=(); for m in "${M[@]}"; do p="${m#*=}"; PATHS+=("${m%%=*}=${p%%::*}"); done  # LABEL=FILE: the plots name each model as the table does
COLUMNS=200 slimbench compare "${PATHS[@]}" --plots $OUT/plots > $OUT/compare.txt

# Call 1: packages, chunk 1 of the data, parents and stage cache; a GPU smoke of every stage kind the runs use.
T0=$(date +%s)
source .dev/bin/setup.sh .dev/d1 > /tmp/setup.log 2>&1; tail -3 /tmp/setup.log
python3 -c "import torch, brevitas, torch_pruning, pydantic; print(torch.__version__, brevitas.__version__, torch.cuda.is_available())"
mkdir -p /root/smokedata && ln -sf /root/cifar/train_1.npz /root/smokedata/train_1.npz && ln -sf /root/cifar/train_2.npz /root/smokedata/test.npz
for row in strongkd-prune30-r8-sparse40-w3a3-e40-gradual70-airnetwide-more strongkd-prune30-r8-sparse40-w2a2-e40-gradual70; do
  SLIMBENCH_DATA=/root/smokedata PYTHONFAULTHANDLER=1 timeout 100 python3 .dev/bin/sb.py study run studies/frontier-strongkd.yaml --smoke --out /root/smoke \
    --only $row --no-progress --no-report > $OUT/smoke-$row.log 2>&1; echo "== $row rc=$? $(( $(date +%s) - T0 ))s"
  grep -n "running in\|Error\|error\|Traceback" $OUT/smoke-$row.log | head -8 | cut -c1-250
done
find /root/smoke/stages -name log.jsonl | while read f; do echo "$f $(grep -o '"device": "[^"]*"\|"test_acc": [0-9.]*' $f | tr '\n' ' ')"; done
echo "== end $(( $(date +%s) - T0 ))s"

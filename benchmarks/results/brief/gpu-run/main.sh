# Device call 3: the brief's GPU experiments in parallel processes, stopped at $1 seconds, then collected into $OUT.
DEADLINE=$1
T0=$(date +%s)
source .xfer0/setup.sh .xfer3
export SLIMBENCH_DATA=${DATA:-/root/cifar}
B=${B:-/root/bg}; mkdir -p $B/device-logs
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
SB="python3 .xfer0/sb.py study run studies/brief.yaml --out $B --no-progress"
$SB --only resnet20 --only resnet20-prune30 --only resnet20-fp16 > $B/device-logs/p1-resnet20.log 2>&1 & P1=$!
$SB --only resnet34-brief --only resnet34-linear-pruned-10 > $B/device-logs/p3-resnet34-adam256.log 2>&1 & P3=$!
$SB --only preactresnet18-linear-20 > $B/device-logs/p5-preact18.log 2>&1 & P5=$!
PIDS="$P1 $P3 $P5"
last=0
while [ $(( $(date +%s) - T0 )) -lt $DEADLINE ]; do
  alive=0; for p in $PIDS; do kill -0 $p 2>/dev/null && alive=1; done
  [ $alive = 0 ] && break
  now=$(( $(date +%s) - T0 ))
  if [ $(( now - last )) -ge 60 ]; then
    last=$now; echo "== t=${now}s"; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
    for f in $B/device-logs/*.log; do echo "$(basename $f): $(tail -c 300 $f | tail -1)"; done
  fi
  sleep 5
done
echo "== deadline/all done at $(( $(date +%s) - T0 ))s"; for p in $PIDS; do kill -TERM $p 2>/dev/null; done; for i in $(seq 20); do alive=0; for p in $PIDS; do kill -0 $p 2>/dev/null && alive=1; done; [ $alive = 0 ] && break; sleep 1; done
for p in $PIDS; do kill -9 $p 2>/dev/null; done
timeout 60 python3 .xfer0/collect.py $B resnet20 resnet20-prune30 resnet20-fp16 resnet34-sgd-aug resnet34-sgd-aug-structured-20 resnet34-brief resnet34-linear-pruned-10 resnet34-magnitude-20-bs128 resnet34-magnitude-20-bs64 preactresnet18-linear-20 2>&1 | tee $B/device-logs/collect.log
find $B -name '*.pt' -size +4M > /root/excl; cat /root/excl | head -40 > $B/device-logs/left-out.txt
tar czf /root/bg.tgz -X /root/excl -C $(dirname $B) $(basename $B) && ls -la /root/bg.tgz && split -b 15M /root/bg.tgz $OUT/bg.tgz.part-
cp $B/device-logs/*.log $OUT/ 2>/dev/null; ls -la $OUT; echo "== end $(( $(date +%s) - T0 ))s"

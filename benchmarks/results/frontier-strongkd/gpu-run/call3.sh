# Call 3: the last data chunk, then the study rows side by side on the GPU until $1 seconds, then collected into $OUT.
DEADLINE=$1
T0=$(date +%s)
source .dev/bin/setup.sh .dev/d3
export SLIMBENCH_DATA=/root/cifar
B=/root/frontier; mkdir -p $B/logs; cp -rn /root/keep/frontier/stages $B/
SB="python3 .dev/bin/sb.py study run studies/frontier-strongkd.yaml --out $B --no-progress --no-report"
PIDS=""
for row in strongkd-prune30-r8-sparse40-w3a3-e15-gradual70-more strongkd-prune30-r8-sparse40-w3a3-e40-gradual70-more \
    strongkd-prune30-r8-sparse40-w3a3-e40-gradual70-airnetwide-more  \
    strongkd-prune30-r8-sparse40-w2a2-e40-gradual70; do
  $SB --only $row > $B/logs/$row.log 2>&1 & PIDS="$PIDS $!"
done
last=0
while [ $(( $(date +%s) - T0 )) -lt $DEADLINE ]; do
  alive=0; for p in $PIDS; do kill -0 $p 2>/dev/null && alive=1; done
  [ $alive = 0 ] && break
  now=$(( $(date +%s) - T0 ))
  if [ $(( now - last )) -ge 60 ]; then
    last=$now; echo "== t=${now}s $(nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader)"
    for f in $(find $B/stages -name log.jsonl); do echo "${f#$B/stages/}: $(wc -l < $f) ep, $(tail -1 $f | grep -o '"val_acc": [0-9.]*\|"epoch_s": [0-9.]*' | tr '\n' ' ')"; done
  fi
  sleep 5
done
echo "== deadline/all done at $(( $(date +%s) - T0 ))s"
for p in $PIDS; do kill -TERM $p 2>/dev/null; done
for i in $(seq 20); do alive=0; for p in $PIDS; do kill -0 $p 2>/dev/null && alive=1; done; [ $alive = 0 ] && break; sleep 1; done
for p in $PIDS; do kill -9 $p 2>/dev/null; done
for f in $B/logs/*.log; do echo "== $(basename $f)"; tail -4 $f | cut -c1-300; done
cd /root && tar czf /root/frontier-gpu.tgz --exclude='frontier/stages/prune-*' --exclude='frontier/stages/quantize-0bc07d7e559d' frontier && split -b 15M /root/frontier-gpu.tgz $OUT/frontier-gpu.tgz.part-
ls -la $OUT; echo "== end $(( $(date +%s) - T0 ))s"

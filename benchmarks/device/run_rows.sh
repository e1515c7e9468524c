#!/bin/bash
# Study rows side by side on the device until a deadline, then their stage directories packed into $OUT:
#   bash benchmarks/device/run_rows.sh SECONDS STUDY.yaml ROW [ROW ...]
# after `source benchmarks/device/setup.sh`. Each row is one `slimbench study run --only ROW` process (they share the
# GPU); every minute it prints GPU use and each stage's epochs and last validation accuracy. At the deadline the
# rows still running get SIGTERM (each stage has checkpointed its last finished epoch, so the study resumes it
# here). Stages carried in (.dev/stages) are left out of the archive, which comes back in parts of 15 MiB
# (at most 8 files come back from a call).
set -u
DEADLINE=$1; STUDY=$2; shift 2
T0=$(date +%s)
mkdir -p "$STUDY_OUT/logs"
PIDS=""
for row in "$@"; do
  python3 -m slimbench.cli study run "$STUDY" --only "$row" --out "$STUDY_OUT" --no-progress --no-report \
    > "$STUDY_OUT/logs/$row.log" 2>&1 &
  PIDS="$PIDS $!"
done
alive() { for p in $PIDS; do kill -0 "$p" 2>/dev/null && return 0; done; return 1; }
last=0
while alive && [ $(( $(date +%s) - T0 )) -lt "$DEADLINE" ]; do
  now=$(( $(date +%s) - T0 ))
  if [ $(( now - last )) -ge 60 ]; then
    last=$now
    echo "== t=${now}s $(nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null)"
    find "$STUDY_OUT/stages" -name log.jsonl -newer "$STUDY_OUT/logs" 2>/dev/null | while read -r f; do
      echo "  ${f#"$STUDY_OUT"/stages/}: $(wc -l < "$f") epochs, $(tail -1 "$f" | grep -o '"val_acc": [0-9.]*\|"epoch_s": [0-9.]*' | tr '\n' ' ')"
    done
  fi
  sleep 5
done
echo "== stopped at $(( $(date +%s) - T0 ))s"
for p in $PIDS; do kill -TERM "$p" 2>/dev/null; done
for _ in $(seq 30); do alive || break; sleep 1; done
for p in $PIDS; do kill -9 "$p" 2>/dev/null; done
for row in "$@"; do echo "== $row"; tail -3 "$STUDY_OUT/logs/$row.log" | cut -c1-300; done
carried=""
[ -d .dev/stages ] && for s in .dev/stages/*; do carried="$carried --exclude=stages/$(basename "$s")"; done
# shellcheck disable=SC2086
tar czf /tmp/study.tgz -C "$STUDY_OUT" $carried stages logs
split -b 15M /tmp/study.tgz "$OUT/study.tgz.part-"
ls -la "$OUT"
echo "== end $(( $(date +%s) - T0 ))s (here: cat study.tgz.part-* | tar xz, then slimbench study merge)"

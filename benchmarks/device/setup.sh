# Sourced at the start of every device call:  source benchmarks/device/setup.sh [.dev/dN]
# Installs the carried wheels (.dev/whl, once per machine), puts slimbench on the path, rebuilds this call's data
# chunk into /root/cifar, and copies carried parents (.dev/parents/NAME -> benchmarks/results/NAME) and a study's
# stage cache (.dev/stages -> $STUDY_OUT/stages, never over a stage already there).
if [ -d .dev/whl ] && [ ! -f /tmp/site/.installed ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .dev/whl/*.whl \
    && touch /tmp/site/.installed || echo "setup: wheel install failed" >&2
fi
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 SLIMBENCH_DATA=${SLIMBENCH_DATA:-/root/cifar}
export STUDY_OUT=${STUDY_OUT:-/root/study}
mkdir -p "$SLIMBENCH_DATA" "$STUDY_OUT"
[ -n "$1" ] && python3 benchmarks/device/devicekit.py unpack-data "$1" "$SLIMBENCH_DATA"
[ -d .dev/parents ] && mkdir -p benchmarks/results && cp -rn .dev/parents/* benchmarks/results/
[ -d .dev/stages ] && cp -rn .dev/stages "$STUDY_OUT/"
python3 -c "import torch, slimbench; print('setup: torch', torch.__version__, 'cuda', torch.cuda.is_available())"
ls "$SLIMBENCH_DATA"

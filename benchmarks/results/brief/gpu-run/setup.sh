if [ -z "$SKIP_SETUP" ]; then
# Sourced at the start of every device call: packages, paths, the data chunk this call carries.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl 2>&1 | tail -2
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
mkdir -p /root/cifar
python3 .xfer0/unpack.py "$1" /root/cifar
ls -la /root/cifar
fi

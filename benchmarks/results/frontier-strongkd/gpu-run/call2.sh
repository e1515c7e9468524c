T0=$(date +%s); source .dev/bin/setup.sh .dev/d2; echo "== end $(( $(date +%s) - T0 ))s"

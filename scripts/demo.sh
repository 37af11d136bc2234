#!/usr/bin/env bash
# Sets everything up, then runs the lab demo: the default topology (configs/lab.yaml) - host0 and host1
# with three workloads in network namespaces, dual stack, one `bgpd run` per host - converges, every
# workload pings every other workload and every host over IPv4 and over IPv6 (one matrix per family), and
# host0's routes in both families are shown. The lab is removed at the end (KEEP=1 leaves it running;
# `.venv/bin/bgpd lab down` removes it later). Exits non-zero if any ping fails.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
BGPD=.venv/bin/bgpd
TOPOLOGY=${TOPOLOGY:-configs/lab.yaml}
if [ "${KEEP:-0}" != 1 ]; then
    trap '$BGPD lab -t "$TOPOLOGY" down >/dev/null' EXIT
fi
$BGPD lab -t "$TOPOLOGY" up --rebuild
echo
$BGPD lab -t "$TOPOLOGY" check
echo
echo "host0's kernel routes (bgpd lab routes host0):"
$BGPD lab -t "$TOPOLOGY" routes host0

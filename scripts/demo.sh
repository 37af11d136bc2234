#!/usr/bin/env bash
# Sets everything up, then runs the two-host example: host0 and host1 in network namespaces on one
# underlay bridge, each running `bgpd run` with configs/host0.yaml / host1.yaml; a workload route on each
# host travels to the other over BGP and is installed there (`ip route show proto bird`).
# Everything it creates is removed at the end, also on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
P=bgpdemo-
cleanup() {
    for pid in ${PIDS:-}; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    for ns in ${P}host0 ${P}host1 ${P}sw; do ip netns del "$ns" 2>/dev/null || true; done
}
trap cleanup EXIT
cleanup
ip netns add ${P}sw && ip -n ${P}sw link add br0 type bridge && ip -n ${P}sw link set br0 up
declare -A ADDR=([host0]=192.168.100.10 [host1]=192.168.100.3)
declare -A BLOCK=([host0]=10.20.1.0/24 [host1]=10.20.2.0/24)
for h in host0 host1; do
    ip netns add ${P}$h
    ip -n ${P}$h link set lo up
    ip link add eth0 netns ${P}$h type veth peer name p$h netns ${P}sw
    ip -n ${P}sw link set p$h master br0 up
    ip -n ${P}$h addr add ${ADDR[$h]}/24 dev eth0 && ip -n ${P}$h link set eth0 up
    ip -n ${P}$h route add blackhole ${BLOCK[$h]} proto 80      # the host's block, as Felix programs it
    mkdir -p /tmp/bgpdemo && : > /tmp/bgpdemo/$h.log
    sed "s#/run/bgpd/$h#/tmp/bgpdemo/$h#" configs/$h.yaml > /tmp/bgpdemo/$h.yaml
    ip netns exec ${P}$h .venv/bin/bgpd run -c /tmp/bgpdemo/$h.yaml >/tmp/bgpdemo/$h.log 2>&1 &
    PIDS="${PIDS:-} $!"
done
for h in host0 host1; do
    other=$([ $h = host0 ] && echo host1 || echo host0)
    for _ in $(seq 100); do
        ip -n ${P}$h route show proto bird | grep -q "${BLOCK[$other]} via ${ADDR[$other]}" && break
        sleep 0.2
    done
    echo "== $h: routes installed by bgpd (ip route show proto bird)"
    ip -n ${P}$h route show proto bird | grep "${BLOCK[$other]}" \
        || { echo "FAILED: see /tmp/bgpdemo/$h.log"; exit 1; }
done
echo "OK: each host learned the other's block over BGP"

#!/usr/bin/env bash
# Installs what bgpd, its lab and its tests need on a fresh Debian machine (run as root):
# Debian packages (iproute2, BIRD 2 as the reference peer, procps, iputils-ping, Prometheus for the
# scrape test, etcd for the datastore tests and lab, openssl for their TLS test, systemd's
# systemd-analyze to verify configs/bgpd.service) and a virtualenv at .venv
# with bgpd and its test tools. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
    echo "setup: run as root (network namespaces, apt-get)" >&2
    exit 1
fi
need=()
command -v ip >/dev/null || need+=(iproute2)
command -v bird >/dev/null || need+=(bird2)
command -v ps >/dev/null || need+=(procps)
command -v ping >/dev/null || need+=(iputils-ping)
command -v prometheus >/dev/null || need+=(prometheus)
command -v etcd >/dev/null || need+=(etcd-server)
command -v openssl >/dev/null || need+=(openssl)
command -v systemd-analyze >/dev/null || need+=(systemd)
if ((${#need[@]})); then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]'

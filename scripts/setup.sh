#!/usr/bin/env bash
# Installs what bgpd, its lab and its tests need on a fresh Debian machine (run as root):
# Debian packages (iproute2, BIRD 2 as the reference peer, GoBGP as a second one, procps, iputils-ping,
# Prometheus for the scrape test, etcd for the datastore tests and lab, openssl for their TLS test, systemd's
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
command -v gobgpd >/dev/null || need+=(gobgpd)  # its systemd unit needs /etc/gobgpd.conf: never starts
command -v ps >/dev/null || need+=(procps)
command -v ping >/dev/null || need+=(iputils-ping)
command -v prometheus >/dev/null || need+=(prometheus)
command -v etcd >/dev/null || need+=(etcd-server)
command -v openssl >/dev/null || need+=(openssl)
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)  # the container test's base image, from Debian
command -v dockerd >/dev/null || need+=(docker.io)      # the container test's engine (tests/container)
if ((${#need[@]})); then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # docker.io's init script would start dockerd in this machine's own network namespace (a bridge,
    # iptables rules): while apt installs, a policy-rc.d refuses every service start (unless the machine
    # has its own). The tests start dockerd themselves, inside a namespace of their own.
    made_policy=
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        made_policy=1
    fi
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    if [ -n "$made_policy" ]; then rm -f /usr/sbin/policy-rc.d; fi
fi
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
# Compose v2 (docker-compose.yml has `name:`, which bookworm's docker-compose 1.29 rejects): Debian trixie's
# docker-compose package (a static Go binary), fetched with a private apt configuration so that this
# machine's sources stay as they are, and put in .venv/bin.
if [ ! -x .venv/bin/docker-compose ]; then
    tmp=$(mktemp -d)
    mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main" \
        > "$tmp/sources.list"
    apt_private=(-o "Dir::Etc::sourcelist=$tmp/sources.list" -o Dir::Etc::sourceparts=/dev/null
        -o "Dir::State::Lists=$tmp/lists" -o "Dir::Cache=$tmp/cache" -o APT::Sandbox::User=root)
    apt-get "${apt_private[@]}" update -qq
    (cd "$tmp" && apt-get "${apt_private[@]}" download -qq docker-compose)
    dpkg -x "$tmp"/docker-compose_*.deb "$tmp/pkg"
    install -m 755 "$tmp/pkg/usr/libexec/docker/cli-plugins/docker-compose" .venv/bin/docker-compose
    rm -rf "$tmp"
fi

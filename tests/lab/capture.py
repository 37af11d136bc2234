"""A packet count inside one lab namespace (a router) while one workload pings another: which IP
protocol and addresses cross it, and for IP-in-IP the inner header too. Shared by the lab tests."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

from bgpd.lab.lab import Lab

SNIFFER = r"""
import json, signal, socket, sys
seen = {}
sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
def stop(*_):
    print(json.dumps(seen), flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
print("ready", flush=True)
while True:
    frame, where = sock.recvfrom(65535)
    if where[2] == socket.PACKET_OUTGOING:  # each packet once, as it arrives at the router
        continue
    ip = frame[14:]
    key = f"{ip[9]} {socket.inet_ntoa(ip[12:16])} {socket.inet_ntoa(ip[16:20])}"
    if ip[9] == 4:  # IP-in-IP: the inner addresses too
        inner = ip[(ip[0] & 15) * 4:]
        key += f" {inner[9]} {socket.inet_ntoa(inner[12:16])} {socket.inet_ntoa(inner[16:20])}"
    seen[key] = seen.get(key, 0) + 1
"""


def capture(lab: Lab, node: str, source: str, target: str) -> dict[str, int]:
    """What enters the lab's namespace `node` (e.g. "rt", "tor0") while `source` pings `target` (it must
    answer): 'PROTO SRC DST[ PROTO SRC DST]' -> count."""
    sniffer = subprocess.Popen(
        ["ip", "netns", "exec", lab.prefix + node, sys.executable, "-c", SNIFFER],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert sniffer.stdout is not None and sniffer.stdout.readline().strip() == "ready"
        host = lab.owner(source)
        assert host is not None
        ns = lab.workload_ns(host, [str(w) for w in host.workloads].index(source))
        assert lab.ping(ns, source, target).ok
        sniffer.send_signal(signal.SIGTERM)
        out, _ = sniffer.communicate(timeout=10)
    finally:
        if sniffer.poll() is None:
            sniffer.kill()
            sniffer.wait()
    return dict(json.loads(out))

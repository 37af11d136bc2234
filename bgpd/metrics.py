"""Prometheus metrics and the HTTP endpoint that serves them with the health probes.

State is read at scrape time by a custom collector (as GoBGP does): session state, counters kept by the
speaker, kernel and ExaBGP facts. The two latency histograms are the only metrics updated as events
happen. Names follow Prometheus conventions and the exporters users know (`bgp_peer_state`,
`bgp_routes_received_total` in the style of GoBGP / frr_exporter); bgpd-specific ones start with `bgpd_`.

HTTP (asyncio, in the daemon's loop, so a scrape sees one consistent state):
`/metrics`, `/livez` and `/readyz` (200 when the probe passes, 503 with the reason otherwise).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import platform
import time
from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from bgpd import __version__, views
from bgpd.engine.establish import CANNOT
from bgpd.exabgp.supervisor import RESTART_REASONS
from bgpd.model import REPAIR_CAUSES

log = logging.getLogger("bgpd.metrics")

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Latency:
    """The two event-driven histograms, registered in the speaker's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.export = Histogram(
            "bgpd_export_latency_seconds",
            "Local kernel route change to announcement handed to ExaBGP "
            "(one sample per batch, its oldest change)",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.install = Histogram(
            "bgpd_install_latency_seconds",
            "UPDATE received from a peer to route installed in the kernel (one sample per netlink batch, "
            "its oldest change)",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )


class SpeakerCollector(Collector):
    """Reads the daemon's state at scrape time (`views.Daemon`)."""

    def __init__(self, daemon: views.Daemon) -> None:
        self.daemon = daemon

    def collect(self) -> Iterator[Metric]:
        sp = self.daemon
        labels = ["peer", "asn", "type", "afi"]

        def peer_labels(p: dict[str, object]) -> list[str]:
            return [str(p["address"]), str(p["asn"]), str(p["type"]), str(p["afi"])]

        peers = views.peers(sp)
        state = GaugeMetricFamily(
            "bgp_peer_state", "1 when the BGP session is Established, else 0", labels=labels
        )
        uptime = GaugeMetricFamily(
            "bgp_peer_uptime_seconds", "Seconds since the session was established", labels=labels
        )
        received = CounterMetricFamily("bgp_routes_received", "Prefixes received in UPDATEs", labels=labels)
        accepted = CounterMetricFamily(
            "bgp_routes_accepted", "Received prefixes that passed import", labels=labels
        )
        rejected = CounterMetricFamily(
            "bgp_routes_rejected",
            "Received prefixes rejected by import, by reason",
            labels=[*labels, "reason"],
        )
        advertised = GaugeMetricFamily(
            "bgp_routes_advertised", "Prefixes bgpd currently advertises to the peer", labels=labels
        )
        export_filtered = GaugeMetricFamily(
            "bgp_routes_export_filtered",
            "This node's own prefixes the peer's export filters hold back",
            labels=labels,
        )
        updates_in = CounterMetricFamily(
            "bgp_peer_updates_received", "UPDATE messages received", labels=labels
        )
        commands_out = CounterMetricFamily(
            "bgp_peer_update_commands_sent",
            "Announce/withdraw commands handed to ExaBGP for the peer (each becomes one or more UPDATEs)",
            labels=labels,
        )
        flaps = CounterMetricFamily("bgp_peer_flaps", "Established sessions that went down", labels=labels)
        stale = GaugeMetricFamily(
            "bgp_peer_stale_routes",
            "Paths kept through the peer's graceful restart (RFC 4724) and not yet re-sent",
            labels=labels,
        )
        counted = GaugeMetricFamily(
            "bgp_peer_prefixes_received",
            "Prefixes the peer currently announces, before import policy (what max_prefixes counts)",
            labels=labels,
        )
        max_prefixes = GaugeMetricFamily(
            "bgp_peer_max_prefixes", "The peer's max_prefixes limit (peers with one only)", labels=labels
        )
        limit_hits = CounterMetricFamily(
            "bgp_peer_max_prefixes_exceeded",
            "Times the peer went above its max_prefixes limit (RFC 4486)",
            labels=[*labels, "action"],
        )
        held = GaugeMetricFamily(
            "bgp_peer_held_down",
            "1 while the session is held down after a max_prefixes reset, else 0",
            labels=labels,
        )
        failing = GaugeMetricFamily(
            "bgp_peer_cannot_establish",
            "1 when the session has not reached Established in time (its reason: bgpctl show peers)",
            labels=labels,
        )
        for p in peers:
            lv = peer_labels(p)
            state.add_metric(lv, 1.0 if p["state"] == "up" else 0.0)
            uptime.add_metric(lv, float(p["uptime_seconds"]))
            received.add_metric(lv, float(p["received"]))
            accepted.add_metric(lv, float(p["accepted"]))
            for reason, count in dict(p["rejected"]).items():
                rejected.add_metric([*lv, reason], float(count))
            advertised.add_metric(lv, float(p["advertised"]))
            export_filtered.add_metric(lv, float(p["export_filtered"]))
            updates_in.add_metric(lv, float(p["updates_received"]))
            commands_out.add_metric(lv, float(sp.commands_sent.get(str(p["address"]), 0)))
            flaps.add_metric(lv, float(p["flaps"]))
            stale.add_metric(lv, float(p["stale_routes"]))
            counted.add_metric(lv, float(p["prefixes"]))
            if p["max_prefixes"] is not None:
                max_prefixes.add_metric(lv, float(p["max_prefixes"]))
                limit_hits.add_metric([*lv, str(p["max_prefixes_action"])], float(p["max_prefixes_hits"]))
            held.add_metric(lv, 1.0 if p["held_until"] is not None else 0.0)
            why = p["reason"]
            failing.add_metric(lv, 1.0 if isinstance(why, str) and why.startswith(CANNOT) else 0.0)
        yield from (state, uptime, received, accepted, rejected, advertised, export_filtered)
        yield from (updates_in, commands_out)
        yield from (flaps, stale)
        yield from (counted, max_prefixes, limit_hits, held, failing)

        c = sp.engine.counters
        engine = sp.engine
        families = engine.cfg.families
        rib_paths = GaugeMetricFamily("bgpd_rib_paths", "Paths held in the Adj-RIBs-In", labels=["afi"])
        installed = GaugeMetricFamily(
            "bgpd_kernel_routes_installed", "Routes bgpd owns in the kernel", labels=["afi"]
        )
        selected = GaugeMetricFamily(
            "bgpd_kernel_routes_selected",
            "Kernel routes selected for export (workload routes and blocks)",
            labels=["afi"],
        )
        announced = GaugeMetricFamily(
            "bgpd_routes_announced", "Prefixes announced from this host", labels=["afi"]
        )
        for family in families:  # counts kept as the tables change: nothing walks a table here
            afi = [f"ipv{family}"]
            rib_paths.add_metric(afi, float(engine.rib.path_count(family)))
            installed.add_metric(afi, float(engine.fib.installed_by_family[family]))
            selected.add_metric(afi, float(engine.export.selected_by_family[family]))
            announced.add_metric(afi, float(engine.export.announced_by_family[family]))
        yield from (rib_paths, installed, selected, announced)
        yield CounterMetricFamily(
            "bgpd_kernel_route_changes", "Route changes written to the kernel", value=c["kernel_ops"]
        )
        installer = sp.writer_state
        errors = CounterMetricFamily("bgpd_netlink_errors", "Netlink route changes that failed after retries")
        errors.add_metric([], float(installer.errors if installer else 0))
        yield errors
        yield CounterMetricFamily(
            "bgpd_netlink_retries",
            "Netlink route changes retried",
            value=installer.retried if installer else 0,
        )
        resyncs = CounterMetricFamily(
            "bgpd_kernel_resyncs",
            "Kernel re-reads after events that notifications do not cover "
            "(overflow: the whole table; link: one device's routes)",
            labels=["reason"],
        )
        for reason in ("overflow", "link"):
            resyncs.add_metric([reason], float(c[f"kernel_resyncs_{reason}"]))
        yield resyncs
        yield CounterMetricFamily(
            "bgpd_kernel_watcher_restarts",
            "Kernel route watchers started again after reading failed (the kernel's routes read again)",
            value=c["kernel_watcher_failures"],
        )
        repairs = CounterMetricFamily(
            "bgpd_kernel_repairs",
            "Routes of bgpd's protocol rewritten because the kernel differed from what bgpd wants, by cause",
            labels=["cause"],
        )
        for cause in REPAIR_CAUSES:
            repairs.add_metric([cause], float(engine.fib.repairs[cause]))
        yield repairs
        yield CounterMetricFamily(
            "bgpd_kernel_audits", "Periodic re-reads of bgpd's own kernel routes", value=c["kernel_audits"]
        )
        waiting = GaugeMetricFamily(
            "bgpd_kernel_routes_waiting_device",
            "Learned routes not installed because the device they go through (tunl0) is missing or down",
            labels=["device"],
        )
        for device, prefixes in sorted(engine.fib.waiting_by_device().items()):
            waiting.add_metric([device], float(prefixes))
        yield waiting
        yield CounterMetricFamily(
            "bgpd_kernel_collisions",
            "Learned prefixes not installed because a foreign route holds them",
            value=c["kernel_collisions"],
        )
        restarts = CounterMetricFamily(
            "bgpd_exabgp_restarts",
            "ExaBGP child restarts by reason: exited (it died), hung (killed by bgpd: no API progress)",
            labels=["reason"],
        )
        for reason in RESTART_REASONS:
            restarts.add_metric([reason], float(sp.exabgp_state.restart_reasons[reason]))
        yield restarts
        yield GaugeMetricFamily(
            "bgpd_exabgp_up",
            "1 when the ExaBGP child runs and is attached",
            value=1.0 if views.live(sp)[0] else 0.0,
        )
        reloads = CounterMetricFamily(
            "bgpd_config_reloads", "Configuration reloads by result", labels=["result"]
        )
        reloads.add_metric(["success"], float(c["reloads_ok"]))
        reloads.add_metric(["failure"], float(c["reloads_failed"]))
        yield reloads
        yield GaugeMetricFamily(
            "bgpd_config_last_reload_successful",
            "1 if the last reload succeeded (or none was tried)",
            value=0.0 if engine.last_reload and not engine.last_reload.get("ok") else 1.0,
        )
        yield GaugeMetricFamily(
            "bgpd_ready", "1 when the readiness probe passes", value=1.0 if views.ready(sp)[0] else 0.0
        )
        ds = sp.datastore_state
        if ds is not None:
            yield GaugeMetricFamily(
                "bgpd_datastore_up",
                "1 when the datastore's records are listed and watched; 0: routing on the last known state",
                value=1.0 if ds.up else 0.0,
            )
            yield GaugeMetricFamily(
                "bgpd_datastore_revision", "etcd revision of the records held", value=float(ds.revision)
            )
            yield GaugeMetricFamily(
                "bgpd_datastore_applied_revision",
                "etcd revision the configuration in effect was derived from",
                value=float(ds.applied_revision),
            )
            yield CounterMetricFamily(
                "bgpd_datastore_resyncs", "Fresh lists after a broken watch or an outage", value=ds.resyncs
            )
            yield GaugeMetricFamily(
                "bgpd_datastore_problems",
                "Datastore records (or parts of the derivation) left out or ignored (bgpctl show status)",
                value=float(len(ds.problems)),
            )
        yield GaugeMetricFamily(
            "bgpd_start_time_seconds", "Start time, seconds since the epoch", value=sp.started
        )
        info = InfoMetricFamily("bgpd_build", "bgpd build information")
        info.add_metric(
            [],
            {
                "version": __version__,
                "exabgp_version": views.exabgp_version(),
                "python_version": platform.python_version(),
                "role": views.role(sp),
            },
        )
        yield info


def registry_for(daemon: views.Daemon) -> tuple[CollectorRegistry, Latency]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SpeakerCollector(daemon))
    return registry, Latency(registry)


class HttpEndpoint:
    """Minimal HTTP/1.0 server for /metrics, /livez, /readyz (GET only)."""

    def __init__(self, daemon: views.Daemon, registry: CollectorRegistry, host: str, port: int) -> None:
        self.daemon = daemon
        self.registry = registry
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        try:
            self._server = await asyncio.start_server(self._handle, self.host, self.port)
        except OSError as exc:  # asyncio's message carries the address as a Python tuple: say it as written
            reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
            raise OSError(exc.errno, f"metrics.listen {self.host}:{self.port}: {reason}") from None
        log.info("metrics endpoint listening", extra={"kv": {"listen": f"{self.host}:{self.port}"}})

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10.0)
            method, target = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")[:2]
            status, ctype, body = self.respond(method, target.split("?", 1)[0])
            writer.write(
                f"HTTP/1.0 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                f"Connection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (
            TimeoutError,
            ValueError,
            ConnectionError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
        ):
            pass
        finally:
            with contextlib.suppress(ConnectionError):
                writer.close()

    def respond(self, method: str, path: str) -> tuple[str, str, bytes]:
        if method != "GET":
            return "405 Method Not Allowed", "text/plain", b"GET only\n"
        if path == "/metrics":
            started = time.perf_counter()
            body = generate_latest(self.registry)
            log.debug("scrape", extra={"kv": {"ms": round((time.perf_counter() - started) * 1000, 1)}})
            return "200 OK", CONTENT_TYPE_LATEST, body
        if path in ("/livez", "/readyz"):
            ok, reason = (views.live if path == "/livez" else views.ready)(self.daemon)
            return ("200 OK" if ok else "503 Service Unavailable"), "text/plain", f"{reason}\n".encode()
        return "404 Not Found", "text/plain", b"try /metrics, /livez or /readyz\n"

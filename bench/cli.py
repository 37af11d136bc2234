"""`python -m bench`: bgpd against BIRD 2 on the same workloads, in network namespaces (issue 6).

Run from the repository root as root: ``sudo .venv/bin/python -m bench`` (``--help`` for options).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import time
import traceback
from collections.abc import Callable
from datetime import datetime
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any

from . import floor, profiling, report, scenarios, topo
from .scenarios import Settings

SCENARIOS = (
    "latency",
    "latency-active",
    "bulk10k",
    "bulk100k",
    "reflector",
    "reflector200",
    "memory",
    "latency6",
    "bulk10k6",
    "bulk100k6",
    "floor",
    "blocks",
    "fuzz",
    "soak",
)
# run only when named in --scenarios (the default run, IPv6 included, takes ~11 min on a 2-core VM)
IPV6_SCENARIOS = ("latency6", "bulk10k6", "bulk100k6")
ON_REQUEST = ("floor", "blocks", "fuzz", "soak")
# left out of --quick's default set (with bulk100k and bulk100k6): 200 BIRD clients take ~2 min
NOT_QUICK = ("bulk100k", "bulk100k6", "reflector200")
# bgpd alone, each with its own report (DIR/fuzz.md, DIR/soak-DATE.md), never rows of latest.md: a run of
# only these leaves latest.json/latest.md as they are (issue 14)
STANDALONE = ("fuzz", "soak")
DAEMONS = ("bgpd", "bird")
DEFAULT_REPEAT = {
    "latency": 5,
    "latency-active": 5,
    "bulk10k": 5,
    "bulk100k": 3,
    "reflector": 3,
    "reflector200": 1,
    "memory": 3,
    "latency6": 5,
    "bulk10k6": 5,
    "bulk100k6": 3,
    "floor": 5,
    "blocks": 3,
    "fuzz": 1,
    "soak": 1,
}
# the two-host scenarios in each address family: IPv6's are IPv4's with the suffix "6" (scenarios.V6)
BULK_SIZES = {"bulk10k": 10_000, "bulk100k": 100_000}
# the blocks scenario runs two sizes; their runs are kept under these keys (report: one row per size)
BLOCKS_KEYS = ("blocks_small", "blocks_large")
# the floor scenario runs ExaBGP alone; its runs are kept under these keys (report: the bgpd column)
FLOOR_KEYS = {True: "exabgp", False: "exabgp-unpatched"}
RESULTS = Path(__file__).resolve().parent / "results"


def _csv(allowed: tuple[str, ...]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        items = [x.strip() for x in text.split(",") if x.strip()]
        bad = [x for x in items if x not in allowed]
        if bad:
            raise argparse.ArgumentTypeError(f"unknown {', '.join(bad)} (choose from {', '.join(allowed)})")
        return items

    return parse


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected SMALL,LARGE, got {text!r}") from None
    if len(sizes) != 2 or not 0 < sizes[0] < sizes[1] or sizes[1] > 1 << 24:
        raise argparse.ArgumentTypeError(
            f"expected two sizes SMALL,LARGE with 0 < SMALL < LARGE, got {text!r}"
        )
    return sizes


def _clients(text: str) -> int:
    """A reflector client count: 2 to scenarios.MAX_CLIENTS (one underlay address each)."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of clients, got {text!r}") from None
    if not 2 <= n <= scenarios.MAX_CLIENTS:
        raise argparse.ArgumentTypeError(f"expected 2 to {scenarios.MAX_CLIENTS} clients, got {n}")
    return n


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {n}")
    return n


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark bgpd against BIRD 2 in network namespaces (needs root).",
    )
    p.add_argument(
        "--scenarios",
        type=_csv(SCENARIOS),
        default=None,
        help=f"comma-separated subset of {','.join(SCENARIOS)} (default: latency,latency-active,bulk10k,"
        "bulk100k,reflector,reflector200,memory,latency6,bulk10k6,bulk100k6; --quick: the same without "
        "bulk100k, bulk100k6 and reflector200; floor, blocks, fuzz and soak run only when named; fuzz "
        "and soak write their own reports)",
    )
    p.add_argument("--daemons", type=_csv(DAEMONS), default=list(DAEMONS), help="bgpd,bird (default both)")
    p.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="repetitions of every scenario (default: latency(6)/latency-active 5, bulk10k(6) 5, "
        "bulk100k(6)/reflector/memory/blocks 3, reflector200 1, floor 5)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke run (~3 min): 1 repetition, 20 latency samples, 10 s idle window, no bulk100k(6) "
        "and reflector200 unless asked, memory measured with 10k routes, 20 reflector clients",
    )
    p.add_argument("--samples", type=int, default=None, help="latency samples per repetition (default 25)")
    p.add_argument("--idle-seconds", type=float, default=None, help="idle CPU window (default 15 s)")
    p.add_argument("--clients", type=_clients, default=None, help="reflector clients (default 50)")
    p.add_argument(
        "--routes-per-client", type=_positive, default=200, help="reflector routes per client (200)"
    )
    p.add_argument(
        "--large-clients",
        type=_clients,
        default=scenarios.Settings.reflector_large_clients,
        help=f"reflector200 clients (default 200, at most {scenarios.MAX_CLIENTS})",
    )
    p.add_argument(
        "--large-routes-per-client",
        type=_positive,
        default=scenarios.Settings.reflector_large_routes,
        help="reflector200 routes per client (default 200)",
    )
    p.add_argument(
        "--reflector-timeout",
        type=float,
        default=None,
        help="seconds (default 300; reflector200 1200); given, it applies to both reflector scenarios",
    )
    p.add_argument("--bulk-timeout", type=float, default=600.0, help="seconds per bulk phase (600)")
    p.add_argument(
        "--blocks-sizes",
        type=_sizes,
        default=list(scenarios.BLOCKS_SIZES),
        help="the blocks scenario's two batch sizes, SMALL,LARGE (default 30000,100000)",
    )
    p.add_argument(
        "--fuzz-cases", type=int, default=10_000, help="malformed-UPDATE cases of the fuzz scenario (10000)"
    )
    p.add_argument(
        "--soak-duration", type=float, default=1800.0, help="seconds of churn in the soak scenario (1800)"
    )
    p.add_argument("--seed", type=int, default=1, help="seed of the fuzz and soak scenarios (1)")
    p.add_argument(
        "--profile",
        action="store_true",
        help="after the measured runs, one extra bgpd bulk-100k run under py-spy (sender bgpd, "
        "sender ExaBGP, receiver ExaBGP, receiver bgpd) per family of the bulk100k/bulk100k6 scenarios "
        "selected (IPv4 if neither); not counted in the figures",
    )
    p.add_argument(
        "--profile-reflector", action="store_true", help="also one extra bgpd reflector run under py-spy"
    )
    p.add_argument("--log-level", default="info", help="bgpd runtime.log_level (default info)")
    p.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="configs, logs, batch files (default /tmp/bgpdbench-DATE; kept after the run)",
    )
    p.add_argument("--results", type=Path, default=RESULTS, help="where latest.json/latest.md go")
    p.add_argument(
        "--cleanup",
        action="store_true",
        help="remove namespaces left by a crashed earlier run (prefix bgpdbench-) and exit",
    )
    return p


class Interrupted(BaseException):
    pass


def _on_signal(signum: int, _frame: FrameType | None) -> None:
    raise Interrupted(f"signal {signal.Signals(signum).name}")


def _log(text: str) -> None:
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {text}\n")
    sys.stderr.flush()


def _brief(result: dict[str, Any]) -> str:
    keys = (
        "n",
        "add_p50_ms",
        "add_p90_ms",
        "del_p50_ms",
        "add_s",
        "del_s",
        "add_us_per_route",
        "ctl_add_sender_max_ms",
        "converge_s",
        "bytes_per_route",
        "idle_cpu_receiver_s",
        "session_opened_by",
    )
    return " ".join(
        f"{k}={result[k]:.3f}" if isinstance(result[k], float) else f"{k}={result[k]}"
        for k in keys
        if k in result
    )


def default_scenarios(quick: bool) -> list[str]:
    """What runs without --scenarios: everything but the on-request scenarios (and, if quick, the 100k
    bulks and reflector200)."""
    return [s for s in SCENARIOS if s not in ON_REQUEST and not (quick and s in NOT_QUICK)]


def family_of(scenario: str) -> tuple[str, scenarios.Family]:
    """The scenario in IPv4 terms and its family: latency6 -> (latency, V6), bulk10k -> (bulk10k, V4)."""
    if scenario.endswith("6") and scenario[:-1] in ("latency", *BULK_SIZES):
        return scenario[:-1], scenarios.V6
    return scenario, scenarios.V4


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        quick = args.quick
        self.scenarios: list[str] = args.scenarios or default_scenarios(quick)
        self.daemons: list[str] = args.daemons
        self.repeat = {
            s: args.repeat if args.repeat is not None else (1 if quick else DEFAULT_REPEAT[s])
            for s in SCENARIOS
        }
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        self.workdir: Path = args.workdir or Path(f"/tmp/bgpdbench-{stamp}")
        self.settings = Settings(
            workdir=self.workdir,
            latency_samples=args.samples or (20 if quick else 25),
            idle_seconds=args.idle_seconds if args.idle_seconds is not None else (10.0 if quick else 15.0),
            bulk_timeout=args.bulk_timeout,
            reflector_clients=args.clients or (20 if quick else 50),
            reflector_routes=args.routes_per_client,
            reflector_large_clients=args.large_clients,
            reflector_large_routes=args.large_routes_per_client,
            reflector_large_timeout=args.reflector_timeout or scenarios.Settings.reflector_large_timeout,
            reflector_timeout=args.reflector_timeout or (120.0 if quick else 300.0),
            log_level=args.log_level,
        )
        self.memory_n = 10_000 if quick and "bulk100k" not in self.scenarios else 100_000
        self.results: dict[str, Any] = {
            "date": datetime.now().astimezone().isoformat(timespec="seconds"),
            "machine": report.machine(),
            "scenarios": self.scenarios,
            "daemons": self.daemons,
            "repeat": {s: self.repeat[s] for s in self.scenarios},
            "settings": {
                "latency_samples": self.settings.latency_samples,
                "idle_seconds": self.settings.idle_seconds,
                "reflector_clients": self.settings.reflector_clients,
                "reflector_routes_per_client": self.settings.reflector_routes,
                "reflector200_clients": self.settings.reflector_large_clients,
                "reflector200_routes_per_client": self.settings.reflector_large_routes,
                "memory_routes": self.memory_n,
                "blocks_sizes": list(args.blocks_sizes),
                "quick": quick,
                "workdir": str(self.workdir),
            },
            "runs": {},
            "errors": {},
            "notes": [],
        }

    # --- bookkeeping -------------------------------------------------------------------------------------
    def _store(self, scenario: str, daemon: str, result: dict[str, Any]) -> None:
        self.results["runs"].setdefault(scenario, {}).setdefault(daemon, []).append(result)

    def _error(self, scenario: str, daemon: str, message: str) -> None:
        self.results["errors"].setdefault(scenario, {})[daemon] = message
        self.results["runs"].setdefault(scenario, {}).setdefault(daemon, [])

    def _one(
        self, scenario: str, daemon: str, rep: int, total: int, fn: Callable[[], dict[str, Any]]
    ) -> None:
        _log(f"{scenario} {daemon} {rep + 1}/{total} ...")
        t0 = time.monotonic()
        load = os.getloadavg()[0]
        try:
            result = fn()
        except Exception as exc:
            _log(f"{scenario} {daemon} {rep + 1}/{total} FAILED: {exc}")
            if os.environ.get("BENCH_DEBUG"):
                traceback.print_exc()
            self._error(scenario, daemon, f"failed: {str(exc).splitlines()[0][:200]}")
            return
        result["wall_s"] = time.monotonic() - t0
        result["loadavg_before"] = load
        self._record(scenario, daemon, result)
        _log(f"{scenario} {daemon} {rep + 1}/{total} {_brief(result)} ({result['wall_s']:.0f} s)")

    def _record(self, scenario: str, daemon: str, result: dict[str, Any]) -> None:
        if scenario in ("latency", "latency-active", "latency6", "reflector", "reflector200", "floor"):
            self._store(scenario, daemon, result)
            return
        if scenario in BLOCKS_KEYS:
            self._store(scenario, daemon, result)
            return
        n = result["n"]
        if scenario.startswith("bulk"):
            self._store(scenario, daemon, result)
        if result.get("family", 4) != 4:
            return  # the IPv6 bulk runs carry their own memory figures (report rows of bulk100k6)
        if "memory" in self.scenarios and n == self.memory_n:
            self._store("memory", daemon, result)
        if "idle_cpu_receiver_s" in result:
            window = result["idle_window_s"]
            self._store(
                "idle",
                daemon,
                {
                    "idle_cpu_pct": 100 * result["idle_cpu_receiver_s"] / window,
                    "idle_cpu_sender_pct": 100 * result["idle_cpu_sender_s"] / window,
                    "idle_cpu_receiver_s": result["idle_cpu_receiver_s"],
                    "window_s": window,
                },
            )

    # --- plan --------------------------------------------------------------------------------------------
    def run(self) -> None:
        st = self.settings
        sel = self.scenarios
        memory = "memory" in sel
        idle = st.idle_seconds if memory else None
        for scenario in sel:
            n_rep = self.repeat[scenario]
            base, family = family_of(scenario)
            if base in ("latency", "latency-active"):
                peering = scenarios.ACTIVE if base == "latency-active" else scenarios.MESH
                for rep in range(n_rep):
                    for d in self.daemons:
                        run = partial(scenarios.run_latency, st, d, rep, family, peering)
                        self._one(scenario, d, rep, n_rep, run)
            elif base in BULK_SIZES:
                n = BULK_SIZES[base]
                # the idle CPU window (memory scenario) is taken in the IPv4 10k runs only
                window = idle if n == 10_000 and family.version == 4 else None
                for rep in range(n_rep):
                    for d in self.daemons:
                        self._one(
                            scenario,
                            d,
                            rep,
                            n_rep,
                            partial(scenarios.run_bulk, st, d, rep, n, idle_seconds=window, family=family),
                        )
            elif scenario in ("reflector", "reflector200"):
                self._reflector(scenario, n_rep)
            elif scenario == "memory":
                self._memory(n_rep, idle)
            elif scenario == "floor":
                self._floor(n_rep)
            elif scenario == "blocks":
                self._blocks(n_rep)
        if memory and self.memory_n != 100_000:
            self.results["notes"].append(
                f"memory figures measured with {self.memory_n:,} routes (--quick), not 100k"
            )
        if "reflector" in sel or "reflector200" in sel:
            sizes = [
                f"{name}: {c} BIRD clients × {r} routes"
                for name, c, r in (
                    ("reflector", st.reflector_clients, st.reflector_routes),
                    ("reflector200", st.reflector_large_clients, st.reflector_large_routes),
                )
                if name in sel
            ]
            self.results["notes"].append(
                f"{'; '.join(sizes)}; convergence = every client holds every other client's routes, from "
                "enabling the clients' static routes (all sessions already established)"
            )
        if "reflector" in sel and "reflector200" in sel:
            self._reflector_growth()
        if "latency-active" in sel:
            self.results["notes"].append(
                "latency-active: the latency scenario with the two hosts listing each other as active "
                "peers (bgpd: `bgp.peers` with `passive: false` on both, no mesh; BIRD: no `passive on`), "
                "so both connect and collision detection keeps one session"
            )
        if any(family_of(s)[1].version == 6 for s in sel):
            self.results["notes"].append(
                "IPv6: the same two hosts with fd00:100::10 and ::11 beside their IPv4 addresses, the mesh "
                "session between the IPv6 addresses only (Calico's bird6 mesh; BIRD 2 with ipv6 channels), "
                f"pool {scenarios.V6.pool}, workload routes /128 dev cali0 proto boot (from "
                f"{scenarios.V6.host_prefix(scenarios.V6.bulk_base)} for bulk); IPv6 memory figures "
                "are the bulk 100k IPv6 runs' receiver"
            )
        if memory:
            self.results["notes"].append(
                f"idle CPU over {st.idle_seconds:.0f} s with 10k routes; RSS and CPU are the daemon's "
                "process tree (bgpd + ExaBGP + its API helper; bird alone)"
            )
        if "floor" in sel and "bgpd" in self.daemons:
            self.results["notes"].append(
                "floor: ExaBGP alone, started as bgpd starts it, in a two-host iBGP session; time from the "
                "sender's API helper writing `announce`/`withdraw attributes ...` to ExaBGP until the "
                "receiver's helper reads ExaBGP's JSON update event (both CLOCK_MONOTONIC); shown in the "
                "bgpd column as the part of bgpd's latency that is ExaBGP's; unpatched = "
                "BGPD_EXABGP_UNPATCHED=1"
            )
        if self.args.profile or self.args.profile_reflector:
            self.profile()

    def _memory(self, n_rep: int, idle: float | None) -> None:
        """Memory/CPU figures come from the bulk runs when they ran; otherwise from runs of our own."""
        st, sel, n = self.settings, self.scenarios, self.memory_n
        own_full = f"bulk{n // 1000}k" not in sel
        own_idle = "bulk10k" not in sel and not (own_full and n == 10_000)
        for rep in range(n_rep):
            for d in self.daemons:
                if own_full:
                    self._one(
                        "memory",
                        d,
                        rep,
                        n_rep,
                        partial(
                            scenarios.run_bulk,
                            st,
                            d,
                            rep,
                            n,
                            delete=False,
                            idle_seconds=idle if n == 10_000 else None,
                        ),
                    )
                if own_idle:
                    self._one(
                        "memory",
                        d,
                        rep,
                        n_rep,
                        partial(scenarios.run_bulk, st, d, rep, 10_000, delete=False, idle_seconds=idle),
                    )

    def _blocks(self, n_rep: int) -> None:
        """Both sizes per repetition, the daemons alternating; then time per route large over small."""
        sizes = self.args.blocks_sizes
        for rep in range(n_rep):
            for key, n in zip(BLOCKS_KEYS, sizes, strict=True):
                for d in self.daemons:
                    self._one(key, d, rep, n_rep, partial(scenarios.run_blocks, self.settings, d, rep, n))
        runs = self.results["runs"]
        for d in self.daemons:
            small, large = (runs.get(key, {}).get(d, []) for key in BLOCKS_KEYS)
            runs.setdefault("blocks", {})[d] = scenarios.blocks_growth(small, large)
        self.results["notes"].append(
            f"blocks: {sizes[0]:,} and {sizes[1]:,} blackhole /32 blocks (protocol 80, from 10.80.0.0) added "
            "on A with one `ip -batch` until all are installed on B (protocol bird), then deleted; time "
            "per route at both sizes and its growth (1 = linear); the control sockets of both daemons "
            f"are asked for their status every {scenarios.CTL_INTERVAL:.1f} s during each phase"
        )

    def _floor(self, n_rep: int) -> None:
        """ExaBGP alone, patched (as bgpd runs it) then unpatched, per repetition. It is bgpd's floor, so
        it runs only when bgpd is among the daemons."""
        if "bgpd" not in self.daemons:
            _log("floor: skipped (ExaBGP's floor under bgpd; bgpd is not among --daemons)")
            self.results["notes"].append("floor: skipped, bgpd not among --daemons")
            return
        for rep in range(n_rep):
            for patched in (True, False):
                key = FLOOR_KEYS[patched]
                self._one("floor", key, rep, n_rep, partial(floor.run_floor, self.settings, rep, patched))

    def _reflector(self, scenario: str, n_rep: int) -> None:
        """The reflector (`reflector`) or the large reflector (`reflector200`), the daemons alternating."""
        st = self.settings
        daemons = list(self.daemons)
        if "bgpd" in daemons:
            ok, why = scenarios.bgpd_reflector_available(st)
            if not ok:
                _log(f"bgpd reflector: not available ({why})")
                self._error(scenario, "bgpd", "not available")
                self.results["notes"].append(f"bgpd reflector: not available (`bgpd check`: {why})")
                daemons.remove("bgpd")
        large = scenario == "reflector200"
        for rep in range(n_rep):
            for d in daemons:
                run = partial(scenarios.run_reflector, st, d, rep, large=large)
                self._one(scenario, d, rep, n_rep, run)

    def _reflector_growth(self) -> None:
        """runs["reflector_growth"]: per daemon, reflector200's medians over reflector's."""
        runs = self.results["runs"]
        for d in self.daemons:
            small, large = (runs.get(key, {}).get(d, []) for key in ("reflector", "reflector200"))
            runs.setdefault("reflector_growth", {})[d] = scenarios.reflector_growth(small, large)

    def profile(self) -> None:
        if not profiling.available():
            _log(f"--profile: py-spy not found ({profiling.PYSPY}); install it: .venv/bin/pip install py-spy")
            return
        outdir = self.args.results / "profile"
        if outdir.exists():
            shutil.rmtree(outdir)
        st = Settings(**{**self.settings.__dict__, "profile_dir": outdir})
        summaries: dict[str, Any] = {}
        if self.args.profile:
            # each family whose bulk 100k scenario is selected (IPv4 if neither); IPv6 profiles: *-ipv6-*
            families = [
                f
                for name, f in (("bulk100k", scenarios.V4), ("bulk100k6", scenarios.V6))
                if name in self.scenarios
            ]
            for family in families or [scenarios.V4]:
                _log(f"profile: bgpd bulk 100k IPv{family.version} under py-spy (not counted) ...")
                try:
                    r = scenarios.run_bulk(st, "bgpd", 99, 100_000, profile=True, family=family)
                    _log(f"profile run: {_brief(r)}")
                    summaries[f"bulk100k{family.suffix}_run"] = r
                except Exception as exc:
                    _log(f"profile run failed: {exc}")
        if self.args.profile_reflector:
            _log("profile: bgpd reflector under py-spy (not counted) ...")
            try:
                ok, _ = scenarios.bgpd_reflector_available(st)
                if ok:
                    r = scenarios.run_reflector(st, "bgpd", 99, profile=True)
                    summaries["reflector_run"] = r
            except Exception as exc:
                _log(f"profile reflector run failed: {exc}")
        text = ["# py-spy profiles (bgpd, not counted in the figures)", ""]
        for path in sorted(outdir.glob("*.txt")):
            summary = profiling.summarize(path, 15)
            summaries[path.stem] = summary
            text += ["```", profiling.format_summary(path.stem, summary, 12), "```", ""]
        (outdir / "summary.md").write_text("\n".join(text))
        (outdir / "summary.json").write_text(json.dumps(summaries, indent=1, default=str))
        self.results["profile"] = {"dir": str(outdir), "summary": str(outdir / "summary.md")}
        _log(f"profile summaries: {outdir / 'summary.md'}")


def run_standalone(name: str, args: argparse.Namespace) -> bool:
    """Run the fuzz or soak scenario (bgpd alone, its own report in --results); True if it passed."""
    t0 = time.monotonic()
    _log(f"{name}: starting")
    if name == "soak":
        from . import soak

        result = soak.run(args.soak_duration, args.results, seed=args.seed, log=_log)
        ok = bool(result["verdict"]["flat"])
    else:
        from . import fuzz

        result = fuzz.run(args.fuzz_cases, args.results, seed=args.seed)
        ok = not result["mismatches"]
    _log(f"{name}: {'passed' if ok else 'FAILED'} in {time.monotonic() - t0:.0f} s; report in {args.results}")
    return ok


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    standalone = [s for s in args.scenarios or () if s in STANDALONE]
    if standalone:
        args.scenarios = [s for s in args.scenarios if s not in STANDALONE]
    if os.geteuid() != 0:
        print("bench: needs root (network namespaces); run: sudo .venv/bin/python -m bench", file=sys.stderr)
        return 1
    if args.cleanup:
        left = topo.leftovers()
        for ns in left:
            topo.remove_namespace(ns)
        print(f"removed {len(left)} namespaces: {' '.join(left)}" if left else "nothing to remove")
        return 0
    for tool in ("ip", topo.BIRD):
        if shutil.which(tool) is None and not Path(tool).exists():
            print(f"bench: {tool} not found (run scripts/setup.sh)", file=sys.stderr)
            return 1
    left = topo.leftovers()
    if left:
        _log(
            f"warning: {len(left)} namespaces from an earlier run ({left[0]} ...); remove them with --cleanup"
        )
    if standalone and not args.scenarios:
        args.results.mkdir(parents=True, exist_ok=True)
        return 0 if all([run_standalone(name, args) for name in standalone]) else 1
    bench = Bench(args)
    _log(f"scenarios {','.join(bench.scenarios)}; daemons {','.join(bench.daemons)}; workdir {bench.workdir}")
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, _on_signal)
    interrupted = False
    t0 = time.monotonic()
    try:
        bench.run()
    except (Interrupted, KeyboardInterrupt) as exc:
        interrupted = True
        _log(f"interrupted ({exc}); cleaning up")
        bench.results["notes"].append("interrupted: partial results")
    finally:
        # ignore further signals while tearing down
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)
        topo.close_all()
        for f in bench.workdir.glob("batch-*.txt"):
            f.unlink()
    bench.results["wall_s"] = round(time.monotonic() - t0, 1)
    bench.results["machine"]["loadavg_at_end"] = os.getloadavg()
    latest, md = report.write(bench.results, args.results)
    rows = bench.results["summary"]
    m = bench.results["machine"]
    print(
        f"\nbgpd vs BIRD {m['bird']} — {bench.results['date']} — {m['nproc']} × {m['cpu']}, "
        f"kernel {m['kernel']}"
    )
    print(report.text_table(rows))
    for note in bench.results["notes"]:
        print(f"- {note}")
    print(f"\nresults: {latest}, {md} (wall {bench.results['wall_s']:.0f} s; logs in {bench.workdir})")
    left = topo.leftovers()
    if left:
        print(f"warning: namespaces left: {left}", file=sys.stderr)
    if interrupted:
        return 130
    return 0 if all([run_standalone(name, args) for name in standalone]) else 1

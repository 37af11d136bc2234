"""`bgpd check` as a user runs it: exit codes and one-line errors without a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bgpd import config

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(p for p in (ROOT / "configs").glob("*.yaml") if p.name.startswith(("host", "reflector")))


def bgpd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bgpd", *args], capture_output=True, text=True, check=False)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_check_accepts_every_shipped_example_and_prints_it_normalized(example: Path) -> None:
    result = bgpd("check", "-c", str(example))
    assert result.returncode == 0, result.stderr
    assert config.parse(result.stdout) == config.load(example)


def test_examples_exist() -> None:
    assert {"host.yaml", "host0.yaml", "host1.yaml"} <= {p.name for p in EXAMPLES}


def test_check_says_where_the_subnet_of_an_address_without_length_comes_from(tmp_path: Path) -> None:
    # 127.0.0.1 is on lo in every namespace; 192.0.2.77 (TEST-NET-1) on no interface of a test machine
    cfg = tmp_path / "h.yaml"
    cfg.write_text("node: {name: h, address: 127.0.0.1, asn: 64512}\n")
    result = bgpd("check", "-c", str(cfg))
    assert result.returncode == 0, result.stderr
    assert "# node.address 127.0.0.1 has no prefix length: subnet 127.0.0.0/8 from interface lo" in (
        result.stdout.splitlines()
    )
    cfg.write_text("node: {name: h, address: 192.0.2.77, asn: 64512}\n")
    lines = bgpd("check", "-c", str(cfg)).stdout.splitlines()
    assert (
        "# node.address 192.0.2.77 has no prefix length and no interface here holds it: "
        "`bgpd run` would refuse to start here"
    ) in lines
    cfg.write_text("node: {name: h, address: 192.0.2.77/24, asn: 64512}\n")
    result = bgpd("check", "-c", str(cfg))
    assert "prefix length" not in result.stdout and "address: 192.0.2.77/24" in result.stdout


def test_check_says_when_there_are_no_pools(tmp_path: Path) -> None:
    cfg = tmp_path / "h.yaml"
    cfg.write_text("node: {name: h, address: 127.0.0.1/8, asn: 64512}\n")
    result = bgpd("check", "-c", str(cfg))
    assert result.returncode == 0 and result.stdout.splitlines()[-1].startswith("# no pools: nothing will be")
    cfg.write_text("node: {name: h, address: 127.0.0.1/8, asn: 64512}\npools: [10.20.0.0/16]\n")
    assert "# no pools" not in bgpd("check", "-c", str(cfg)).stdout


def test_check_rejects_a_bad_config_with_file_line_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("node:\n  name: h\n  address: 192.168.1.1\n  asn: 64512\nbgp:\n  hold_tme: 30\n")
    result = bgpd("check", "-c", str(bad))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"bgpd: {bad}:6: bgp")
    assert "hold_time" in lines[0]  # the suggestion


def test_run_rejects_a_bad_config_before_touching_anything(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("node:\n  name: h\n  address: 300.1.1.1\n  asn: 64512\n")
    result = bgpd("run", "-c", str(bad))
    assert result.returncode == 2
    assert f"{bad}:3: node.address" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    result = bgpd("check", "-c", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert "nope.yaml" in result.stderr and "Traceback" not in result.stderr


def bgpctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bgpd.ctl", *args], capture_output=True, text=True, check=False
    )


def test_bgpctl_without_a_daemon_says_so_in_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "h.yaml"
    cfg.write_text(f"node: {{name: h, address: 192.168.1.1, asn: 64512}}\nruntime: {{dir: {tmp_path}}}\n")
    result = bgpctl("-c", str(cfg), "show", "peers")
    assert result.returncode == 1
    assert result.stderr == f"bgpctl: bgpd is not running (no control socket at {tmp_path}/bgpd.ctl)\n"
    probe = bgpctl("-s", str(tmp_path / "x.ctl"), "health", "--live")
    assert probe.returncode == 1 and "not running" in probe.stderr


def test_bgpctl_with_a_bad_config_reports_it(tmp_path: Path) -> None:
    cfg = tmp_path / "h.yaml"
    cfg.write_text("node: {name: h, address: 192.168.1.1}\n")
    result = bgpctl("-c", str(cfg), "show", "status")
    assert result.returncode == 1
    assert result.stderr.startswith(f"bgpctl: {cfg}:1: node.asn: required key missing")


def test_bgpctl_output_cut_short_by_its_reader_is_no_error() -> None:
    """`bgpctl show kernel | head`: the reader closes the pipe early; no traceback, exit 0."""
    code = (
        "import sys; from bgpd import ctl\n"
        "ctl.request = lambda *a, **k: {'owned': list(range(200_000))}\n"
        "sys.exit(ctl.main(['-s', '/nonexistent', 'show', 'kernel', '--json']))\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline().strip() == "{"
    proc.stdout.close()  # as `head -1` does
    stderr = proc.stderr.read()
    assert proc.wait(timeout=60) == 0 and "Traceback" not in stderr, stderr


def test_bgpctl_takes_the_family_before_or_after_a_prefix() -> None:
    """`show routes -6 PREFIX`, `show routes PREFIX -6` and `show -6 routes PREFIX` mean the same."""
    from bgpd import ctl

    for argv in (
        ["show", "routes", "-6", "fd00:10:20:2::/122"],
        ["show", "routes", "fd00:10:20:2::/122", "-6"],
        ["show", "-6", "routes", "fd00:10:20:2::/122"],
    ):
        args = ctl.parse(argv)
        assert (args.what, args.prefix, args.family) == ("routes", "fd00:10:20:2::/122", 6), argv
    with pytest.raises(SystemExit):  # still a usage error: exit 2
        ctl.parse(["show", "routes", "-6", "fd00::/122", "extra"])
    sent: list[tuple[str, object]] = []

    def request(path: str, command: str, args: object = None, timeout: float = 30.0) -> object:
        sent.append((command, args))
        return []

    original = ctl.request
    ctl.request = request  # type: ignore[assignment]
    try:
        assert ctl.main(["-s", "/nonexistent", "show", "routes", "-4", "10.20.1.0/24"]) == 0
    finally:
        ctl.request = original
    assert sent == [("routes", {"prefix": "10.20.1.0/24", "family": 4})]

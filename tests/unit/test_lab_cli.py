"""`bgpd lab` given bad input: one line, no traceback; the shipped topologies found from any directory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bgpd.lab.cli import TOPOLOGIES, resolve, shipped

ROOT = Path(__file__).resolve().parents[2]


def lab(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "bgpd", "lab", *args]
    return subprocess.run(argv, capture_output=True, text=True, check=False, cwd=cwd, timeout=60)


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    (line,) = result.stderr.strip().splitlines()[-1:]
    return line


def test_a_binary_topology_file_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bin.yaml"
    bad.write_bytes(b"\x00\x01\xff\xfe")
    assert one_line(lab("-t", str(bad), "up")) == f"bgpd lab: {bad}: not a topology file (not UTF-8 text)"


def test_an_unknown_topology_key_gets_its_line_and_a_suggestion(tmp_path: Path) -> None:
    bad = tmp_path / "t.yaml"
    bad.write_text("name: t\nunderlay: 192.168.100.0/24\nasn: 64512\npools: [10.20.0.0/16]\nhostz: []\n")
    assert one_line(lab("-t", str(bad), "up")) == (
        f"bgpd lab: {bad}:5: hostz: unknown key (did you mean 'hosts'?)"
    )


def test_a_negative_or_non_numeric_timeout_is_refused_by_the_parser() -> None:
    assert "seconds, 0 or more" in one_line(lab("up", "--timeout", "-5"))
    assert "is not a number of seconds" in one_line(lab("up", "--timeout", "soon"))


def test_shipped_topologies_are_package_data_found_from_any_directory(tmp_path: Path) -> None:
    assert {"lab", "lab4", "lab-rr", "lab-cross-subnet", "lab-tor"} <= set(shipped())
    for name in shipped():  # configs/NAME.yaml in the source tree is the same file
        assert (ROOT / "configs" / f"{name}.yaml").resolve() == (TOPOLOGIES / f"{name}.yaml").resolve()
    for given in ("lab-tor", "lab-tor.yaml", "configs/lab-tor.yaml"):
        assert resolve(given) in (TOPOLOGIES / "lab-tor.yaml", Path(given))
    # from a directory without configs/: the default and a name both resolve to the package's files
    state = ["--state-dir", str(tmp_path / "state")]  # never a lab somebody left up
    result = lab(*state, "check", cwd=tmp_path)
    assert one_line(result).startswith("bgpd lab: the lab 'lab' is not up")
    result = lab("-t", "lab-tor", *state, "check", cwd=tmp_path)
    assert one_line(result).startswith("bgpd lab: the lab 'tor' is not up")
    assert "No such file" in one_line(lab("-t", "nope", *state, "check", cwd=tmp_path))


def test_a_convergence_failure_names_routes_as_ip_writes_them() -> None:
    from bgpd.lab.lab import _difference

    text = _difference(
        "host0",
        {"10.20.2.0/24": "192.168.100.3", "10.20.1.3": "192.168.100.3"},
        {"10.20.2.0/24": "192.168.100.3", "10.9.9.9": ""},
    )
    assert text == "host0 lacks 10.20.1.3 via 192.168.100.3 and has unexpected 10.9.9.9"
    assert "(" not in text and "[" not in text  # no Python tuples or lists

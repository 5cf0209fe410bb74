"""Run the reliability suite and write docs/reliability.md from its own output.

Each fault-injection test records what it tried and how it ended
(tests/_fault_report.py) in the file ``TGSEMI_RELIABILITY_RECORDS`` names; this
script runs the tests with it set, joins each record to its test's pass/fail from
pytest's JUnit XML, and renders the page. No figure is typed by hand.

    .venv/bin/python benchmarks/reliability_report.py [--out docs/reliability.md]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
TESTS = ["tests/test_reliability_training.py", "tests/test_reliability_data.py", "tests/test_hostile_inputs.py"]
SECTIONS = ["Killed runs", "Damaged data", "Hostile inputs", "Numerical faults", "Distributed faults"]


def run_suite(work: Path) -> tuple[list[dict], dict[str, tuple[str, str]], int, float]:
    """Records, {test id: (result, detail)}, pytest's exit code and its wall time."""
    records, junit = work / "records.jsonl", work / "junit.xml"
    start = time.perf_counter()
    rc = subprocess.call(
        [sys.executable, "-m", "pytest", *TESTS, "-q", "-p", "no:cacheprovider", f"--junitxml={junit}"],
        cwd=ROOT,
        env={**os.environ, "TGSEMI_RELIABILITY_RECORDS": str(records)},
    )
    wall = time.perf_counter() - start
    lines = records.read_text().splitlines() if records.exists() else []
    return [json.loads(line) for line in lines], test_results(junit), rc, wall


def test_results(junit: Path) -> dict[str, tuple[str, str]]:
    results = {}
    for case in ET.parse(junit).iter("testcase"):
        test = case.get("classname").replace(".", "/") + ".py::" + case.get("name")
        outcome = next(iter(case), None)
        if outcome is None:
            results[test] = ("pass", "")
        elif outcome.tag == "skipped" and outcome.get("type") == "pytest.xfail":
            results[test] = ("known gap", outcome.get("message", "").removeprefix("reason: "))
        elif outcome.tag == "skipped":
            results[test] = ("skipped", outcome.get("message", ""))
        else:
            results[test] = ("FAIL", outcome.get("message", "").splitlines()[0] if outcome.get("message") else "")
    return results


def render(records: list[dict], results: dict[str, tuple[str, str]], rc: int, wall: float) -> str:
    counts: dict[str, int] = {}
    for result, _ in results.values():
        counts[result] = counts.get(result, 0) + 1
    summary = ", ".join(f"{n} {result}" for result, n in sorted(counts.items()))
    out = [
        "# Reliability",
        "",
        "What tgsemi does when a run is killed, its data is damaged or hostile, a loss goes",
        "non-finite or a distributed rank dies. Every figure below comes from the fault-injection",
        "tests' own records; regenerate the page with `.venv/bin/python benchmarks/reliability_report.py`.",
        "The same tests run in `make test` (without writing records).",
        "",
        f"Last generated {datetime.date.today()} on {platform.machine()} with {os.cpu_count()} CPU cores, "
        f"torch {torch.__version__}, CPU only: {', '.join(TESTS)} took {wall:.0f} s; "
        f"tests: {summary}{'' if rc == 0 else f' (pytest exit code {rc})'}.",
        "",
        "How the faults are made: training runs are subprocesses of `tests/_fault_train.py` (the `synthetic_tiny`",
        "preset) killed with SIGKILL when they announce a step, or while a patched `torch.save` has written half",
        "a checkpoint; damaged files come from `tgsemi.data.synth.corrupt_files`; non-finite losses from a",
        "method whose loss is patched at one step; the distributed run is two gloo processes on one machine.",
        "Kill points are random with a fixed seed, so every run of the suite tries the same ones.",
    ]
    for section in SECTIONS:
        rows = [r for r in records if r["section"] == section]
        if not rows:
            continue
        out += ["", f"## {section}", "", "| Fault injected | Tries | Outcome | Test |", "|---|---|---|---|"]
        for r in rows:
            result, _ = results.get(r["test"], ("not run", ""))
            name = r["test"].rsplit("::", 1)[-1]
            out.append(f"| {r['fault']} | {r['ok']}/{r['tries']} | {r['outcome']} | {result}: `{name}` |")
    gaps = [(test, detail) for test, (result, detail) in results.items() if result != "pass"]
    if gaps:
        out += [
            "",
            "## Known gaps and failures",
            "",
            "Tests marked as expected failures name a protection that is",
            "still missing; they start failing (strict xfail) once it is added, so the mark gets removed.",
            "",
        ]
        out += [f"- `{test}` ({results[test][0]}): {detail}" for test, detail in gaps]
    return "\n".join(out) + "\n"


HAND_WRITTEN = "\n## Red team"  # the sections from here on are written by hand (input, before, now)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "reliability.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        records, results, rc, wall = run_suite(Path(work))
    old = args.out.read_text() if args.out.exists() else ""
    kept = old[old.index(HAND_WRITTEN) :] if HAND_WRITTEN in old else ""  # the red-team tables stay
    args.out.write_text(render(records, results, rc, wall) + kept)
    print(f"wrote {args.out} ({len(records)} records, pytest exit code {rc})")
    return rc


if __name__ == "__main__":
    sys.exit(main())

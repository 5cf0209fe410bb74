"""Outcome records of the fault-injection tests.

Each test states what it tried and how it ended; ``benchmarks/reliability_report.py``
runs the suite with ``TGSEMI_RELIABILITY_RECORDS`` set and turns the records into
docs/reliability.md, so the figures there are the suite's own. In a plain test run
nothing is written.
"""

import json
import os


def record(section: str, fault: str, tries: int, ok: int, outcome: str) -> None:
    """``ok`` of ``tries`` attempts at ``fault`` ended as ``outcome`` says."""
    path = os.environ.get("TGSEMI_RELIABILITY_RECORDS")
    if not path:
        return
    test = os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" ", 1)[0]
    with open(path, "a") as f:
        f.write(
            json.dumps({"section": section, "fault": fault, "tries": tries, "ok": ok, "outcome": outcome, "test": test})
            + "\n"
        )

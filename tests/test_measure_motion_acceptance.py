"""bench/measure_motion.py: the #14 acceptance table (no ../shared, no model)."""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import measure_motion as mm  # noqa: E402


def _row(**kw):
    r = {"jitter ratio": 1.0, "head speed ratio": 1.0, "elbow spread vs photo": 0.0,
         "start-up jump / real p95 step": 0.5, "lip-sync r": 0.8, "lip-sync r other": 0.1,
         "lip-sync r shift": 0.0, "mouth mean ratio": 1.0}
    r.update(kw)
    return r


def test_acceptance_table_checks_the_mouth_both_ways_and_the_controls():
    rows = {"ok": _row(), "low_mouth": _row(**{"mouth mean ratio": 0.33}),
            "high_mouth": _row(**{"mouth mean ratio": 1.31}),
            "edge": _row(**{"mouth mean ratio": 1 / 1.3, "jitter ratio": 1.3}),
            "control": _row(**{"lip-sync r shift": 0.36}),
            "slow_head": _row(**{"head speed ratio": 0.49})}
    lines = mm.acceptance_table(rows).splitlines()
    mouth = next(x for x in lines if x.startswith("| mouth mean ratio"))
    cells = [c.strip() for c in mouth.split("|")[2:-1]]
    assert [c.endswith("NOT met") for c in cells] == [False, True, True, False, False, False]
    sync = [c.strip() for c in next(x for x in lines if x.startswith("| lip-sync r")).split("|")[2:-1]]
    assert [c.endswith("NOT met") for c in sync] == [False, False, False, False, True, False]
    head = [c.strip() for c in next(x for x in lines if x.startswith("| head speed")).split("|")[2:-1]]
    assert head[-1].endswith("NOT met") and not head[0].endswith("NOT met")
    assert len(lines) == 2 + len(mm.ACCEPTANCE)

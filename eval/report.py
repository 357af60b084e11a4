"""Reports: one JSON (machine-readable), one Markdown (for people) and PNG plots per run.

Everything is rendered into a temporary folder next to ``report_dir`` first; only when all files
exist are they renamed into place one by one (``os.replace``), so an error leaves nothing
half-written and an existing report is only ever replaced file by file, never truncated.
"""
from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from csg.errors import OutputError

logger = logging.getLogger(__name__)

PlotFn = Callable[[Path], None]
"""Writes one figure to the given path (see :mod:`eval.plots`)."""


def to_jsonable(o: Any) -> Any:
    """Numpy scalars/arrays -> Python; NaN / inf -> strings "nan" / "inf" (strict JSON has none)."""
    if isinstance(o, dict):
        return {str(k): to_jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [to_jsonable(v) for v in o]
    if isinstance(o, np.ndarray):
        return to_jsonable(o.tolist())
    if isinstance(o, np.generic):
        o = o.item()
    if isinstance(o, float) and not math.isfinite(o):
        return "nan" if math.isnan(o) else ("inf" if o > 0 else "-inf")
    if isinstance(o, Path):
        return str(o)
    return o


def fmt(v: Any, digits: int = 4) -> str:
    """A table cell: floats to ``digits`` significant digits, NaN as "–", inf as "inf"."""
    if v is None:
        return "–"
    if isinstance(v, (float, np.floating)):
        if math.isnan(v):
            return "–"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return f"{v:.{digits}g}"
    return str(v)


def markdown_table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    """A GitHub Markdown table of ``rows`` (dicts); columns default to the union of keys in order."""
    if not rows:
        return "_(no rows)_\n"
    cols = columns or list(dict.fromkeys(k for r in rows for k in r))
    out = ["| " + " | ".join(cols) + " |", "| " + " | ".join("---" for _ in cols) + " |"]
    out += ["| " + " | ".join(fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(out) + "\n"


def write_report(report_dir: str | os.PathLike, data: dict[str, Any], markdown: str, *,
                 plots: dict[str, PlotFn] | None = None, name: str = "report") -> Path:
    """Write ``<name>.json``, ``<name>.md`` and ``<plot>.png`` files into ``report_dir``.

    All files are produced in a temporary sibling folder, then moved in. Returns ``report_dir``.
    """
    out = Path(report_dir)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    except OSError as e:
        raise OutputError(f"{out}: cannot create the report folder ({e.strerror})") from None
    try:
        (tmp / f"{name}.json").write_text(json.dumps(to_jsonable(data), indent=1) + "\n",
                                          encoding="utf-8")
        (tmp / f"{name}.md").write_text(markdown, encoding="utf-8")
        for plot_name, fn in (plots or {}).items():
            fn(tmp / f"{plot_name}.png")
        if out.exists() and not out.is_dir():
            raise OutputError(f"{out}: exists and is not a folder; choose another -o")
        out.mkdir(exist_ok=True)
        for f in sorted(tmp.iterdir()):
            os.replace(f, out / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("report written to %s", out)
    return out

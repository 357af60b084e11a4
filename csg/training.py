"""What every training loop of csg shares: the per-step log and resumable checkpoints (stage 1,
the vdm renderer and the few-step students; the sync classifiers' trainer aside).

``StepLog`` keeps running sums of the per-step logs (each value averaged over processes with
accelerate's ``gather_for_metrics``), and every ``log_every`` steps (or at the last step) writes one
JSON row to ``metrics.jsonl`` (main process only) and echoes it as one line. Pure bookkeeping: no
torch import here; the accelerator and the tensors come from the caller.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any, Callable


def save_checkpoint(acc, ckdir: Path, step: int, keep: int = 2) -> Path:
    """accelerate ``save_state`` to ``ckdir/step_N`` plus the step counter (``trainer.json``, written
    last, so a half-written checkpoint is never resumed); keeps the ``keep`` newest."""
    path = Path(ckdir) / f"step_{step:07d}"
    acc.save_state(str(path))
    if acc.is_main_process:
        (path / "trainer.json").write_text(json.dumps({"step": step}))
        for old in sorted(Path(ckdir).glob("step_*"))[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return path


def latest_checkpoint(ckdir: Path) -> Path | None:
    """The newest complete ``step_N`` folder under ``ckdir`` (one with ``trainer.json``), or None."""
    done = [p for p in sorted(Path(ckdir).glob("step_*")) if (p / "trainer.json").is_file()]
    return done[-1] if done else None


class StepLog:
    """``log = StepLog(acc, out / "metrics.jsonl", every=50, echo=print)``; per step
    ``log.add(step, {"loss": loss, ...})`` then ``log.maybe_write(step, done, lr=...)``; ``close()``."""

    def __init__(self, acc, path: str | Path, every: int, echo: Callable[[str], Any]):
        self.acc, self.every, self.echo = acc, max(1, int(every)), echo
        self.file = open(path, "a") if acc.is_main_process else None
        self.t0 = time.time()
        self.sums: dict[str, float] = {}
        self.n = 0

    @property
    def minutes(self) -> float:
        return (time.time() - self.t0) / 60

    def add(self, logs: dict[str, Any]) -> None:
        """Accumulate one step's scalar tensors (gathered over processes)."""
        for key, v in logs.items():
            self.sums[key] = self.sums.get(key, 0.0) + \
                self.acc.gather_for_metrics(v.detach()[None]).mean().item()
        self.n += 1

    def maybe_write(self, step: int, done: bool, **extra: Any) -> None:
        """Write and echo the mean row when ``step`` is a multiple of ``every`` or ``done``."""
        if not (step % self.every == 0 or done) or self.n == 0:
            return
        row = {"step": step, "min": round(self.minutes, 2), **extra,
               **{key: round(v / self.n, 5) for key, v in self.sums.items()}}
        if self.file is not None:
            self.file.write(json.dumps(row) + "\n")
            self.file.flush()
        self.echo(" ".join(f"{key}={v:.4g}" if isinstance(v, float) else f"{key}={v}"
                           for key, v in row.items()))
        self.sums, self.n = {}, 0

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None

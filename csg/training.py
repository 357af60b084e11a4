"""What every training loop of csg shares: the optimiser step, the per-step log, the stop rule and
resumable checkpoints (stage 1, the vdm renderer and the few-step students), plus the config check
and the held-out accuracy of the sync classifiers of both stages.

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
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

from csg.errors import ConfigError, CsgError


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


def optimizer_step(acc, model, opt, sched, loss, clip_grad: float, *, clip: bool = True) -> None:
    """One optimiser step through accelerate: backward, clip the gradient norm of ``model`` to
    ``clip_grad`` (only when ``clip``: under ``acc.accumulate`` pass ``acc.sync_gradients``),
    ``opt.step()``, ``sched.step()``, ``opt.zero_grad()``."""
    acc.backward(loss)
    if clip:
        acc.clip_grad_norm_(model.parameters(), clip_grad)
    opt.step()
    sched.step()
    opt.zero_grad()


def out_of_time(step: int, cfg, minutes: float) -> bool:
    """Stop rule: ``step >= cfg.max_steps``, or ``minutes`` reached ``cfg.max_minutes`` (if > 0)."""
    return step >= cfg.max_steps or (cfg.max_minutes > 0 and minutes >= cfg.max_minutes)


def end_step(acc, log: StepLog, ckdir: Path, step: int, logs: dict[str, Any], cfg,
             **extra: Any) -> bool:
    """After optimiser step ``step`` (already counted): add ``logs`` to ``log``, decide whether the
    run is done (:func:`out_of_time`), write the log row (``extra``, e.g. ``lr=``) when due, and
    save a checkpoint every ``cfg.save_every`` steps and at the end. Returns done."""
    log.add(logs)
    done = out_of_time(step, cfg, log.minutes)
    log.maybe_write(step, done, **extra)
    if step % cfg.save_every == 0 or done:
        save_checkpoint(acc, ckdir, step)
    return done


# --- the config check --------------------------------------------------------------------------
MAX_TRAIN_SEED = 2 ** 32 - 1
"""Training seeds: the loops derive per-step generators from ``seed * 1000 + step``."""


def check_training_config(cfg: Any, ints: dict[str, int] = {}) -> None:  # noqa: B006 - read only
    """ConfigError (one line, naming the key) unless the optimisation knobs that ``cfg`` has are
    in range, so a bad ``--set`` fails before data is read or a run folder is written.
    ``ints``: more whole-number keys of ``cfg`` and their lowest allowed value."""
    from csg import validate as V

    lows = {"batch_size": 1, "grad_accum": 1, "warmup": 0, "max_steps": 0, "log_every": 1,
            "save_every": 1, "num_workers": 0, **ints}
    for key, low in lows.items():
        if getattr(cfg, key, None) is not None:
            V.integer(getattr(cfg, key), key, low=low)
    for key in ("lr",):
        if hasattr(cfg, key):
            V.finite(getattr(cfg, key), key, low=0.0, low_open=True)
    for key in ("weight_decay", "max_minutes", "clip_grad", "score_weight"):
        if hasattr(cfg, key):
            V.finite(getattr(cfg, key), key, low=0.0)
    if hasattr(cfg, "seed"):
        V.integer(cfg.seed, "seed", low=0, high=MAX_TRAIN_SEED)
    if getattr(cfg, "export_dtype", "float16") not in ("float16", "float32"):
        raise ConfigError(f"export_dtype must be float16 or float32, got {cfg.export_dtype!r}")
    if getattr(cfg, "mixed_precision", "no") not in ("no", "fp16", "bf16"):
        raise ConfigError(f"mixed_precision must be no, fp16 or bf16, got "
                          f"{cfg.mixed_precision!r}")


@contextmanager
def new_run_folder(out: Path, produced: str = "*.npz") -> Iterator[Path]:
    """Make the run folder ``out`` for the data preparation inside the block. When the folder is
    new and a :class:`CsgError` (refused data) stops the block before any file matching
    ``produced`` was written under it, the folder is removed again: a refused dataset leaves no
    half-made run behind, while encoded or prepared clips are kept for a rerun, and so is
    everything after Ctrl-C."""
    new = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        yield out
    except CsgError:
        if new and not any(out.rglob(produced)):
            shutil.rmtree(out, ignore_errors=True)
        raise


# --- sync classifiers (both stages) ---------------------------------------------------------------
def check_classifier_config(region: str, neg_mix: Sequence[float], regions: Sequence[str],
                            neg_kinds: Sequence[str]) -> None:
    """ConfigError unless ``region`` is one of ``regions`` and ``neg_mix`` has one weight per
    negative kind."""
    if region not in regions:
        raise ConfigError(f"classifier config: region {region!r} is not one of "
                          f"{', '.join(regions)}")
    if len(neg_mix) != len(neg_kinds):
        raise ConfigError(f"classifier config: neg_mix needs {len(neg_kinds)} weights "
                          f"({', '.join(neg_kinds)})")


def kind_accuracy(ok: Sequence[bool], kind: Sequence[int], neg_kinds: Sequence[str]) -> dict:
    """Held-out accuracy of a sync classifier: ``ok[i]`` whether pair i was classified right,
    ``kind[i]`` -1 for a positive, else its index into ``neg_kinds``.

    Returns {"acc": balanced accuracy 0.5 * (positive accuracy + negative accuracy), "pos": the
    positive accuracy, <each negative kind>: its accuracy}; nan where a group is empty.
    """
    oks = [bool(o) for o in ok]
    kinds = [int(k) for k in kind]

    def mean(group: Callable[[int], bool]) -> float:
        hits = [o for o, k in zip(oks, kinds) if group(k)]
        return sum(hits) / len(hits) if hits else float("nan")

    n = len(neg_kinds)
    pos = mean(lambda k: k < 0)
    row = {"acc": 0.5 * (pos + mean(lambda k: 0 <= k < n)), "pos": pos}
    row.update({name: mean(lambda k, i=i: k == i) for i, name in enumerate(neg_kinds)})
    return row


def crop(x: "torch.Tensor", start: "torch.Tensor", length: int) -> "torch.Tensor":
    """Per-item time crop: x (B, W, ...) -> (B, length, ...) from frame start[b] (B,) long (the
    sync classifiers' windows, both stages)."""
    import torch

    idx = start[:, None] + torch.arange(length, device=x.device)[None]  # (B, L)
    return torch.gather(x, 1, idx.reshape(idx.shape + (1,) * (x.dim() - 2)).expand(
        -1, -1, *x.shape[2:]))

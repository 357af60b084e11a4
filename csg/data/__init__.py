"""Datasets for both stages: one format (``manifest.jsonl`` + per-clip ``.npz``), a synthetic
co-speech corpus, preparation of real talking videos, and windowed torch Datasets.

Light at import: torch-backed names (``PoseWindowDataset``, ``VideoWindowDataset``) load on first use.
See ``docs/data.md``.
"""
from __future__ import annotations

from .manifest import (ClipRecord, Clip, compute_stats, load_clip, load_stats, read_manifest,
                       relative_pose, save_npz, select, write_manifest)

__all__ = ["ClipRecord", "Clip", "compute_stats", "load_clip", "load_stats", "read_manifest",
           "relative_pose", "save_npz", "select", "write_manifest", "PoseWindowDataset",
           "VideoWindowDataset", "rule_based_poses"]


def __getattr__(name: str):
    if name in ("PoseWindowDataset", "VideoWindowDataset"):
        from . import dataset

        return getattr(dataset, name)
    if name == "rule_based_poses":
        from .synth_motion import rule_based_poses

        return rule_based_poses
    raise AttributeError(f"module 'csg.data' has no attribute {name!r}")

"""Stage-wise evaluation: pure metric functions, reports with plots, and ``csg eval``.

- :mod:`eval.pose_metrics`, :mod:`eval.sync`, :mod:`eval.frechet`: stage-1 metrics (numpy in,
  numbers out).
- :mod:`eval.pose_autoencoder`: the in-project motion autoencoder behind FGD and diversity.
- :mod:`eval.video_metrics`, :mod:`eval.deep_features`, :mod:`eval.syncnet`: stage-2 metrics.
- :mod:`eval.pose_eval`, :mod:`eval.video_eval`, :mod:`eval.compare`: from files to report dicts.
- :mod:`eval.report`, :mod:`eval.plots`: JSON + Markdown + PNG, written atomically.

See docs/eval.md for every definition.
"""

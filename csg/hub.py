"""Weight folders: a local folder, or a Hugging Face hub id resolved from the local cache only.

The one resolver for checkpoint folders (stage 1, its classifiers, pipeline folders); csg never
downloads. Errors are :class:`csg.errors.WeightsNotFoundError` naming the path and the fix.
"""
from __future__ import annotations

import os
from pathlib import Path

from .errors import WeightsNotFoundError


def resolve_folder(path_or_id: str | os.PathLike, *, what: str = "checkpoint",
                   marker: str | None = None, hint: str = "") -> Path:
    """A local folder, else ``owner/name`` from the hub cache (``local_files_only``).

    what: the kind of folder, for messages. marker: a file the folder must hold (checked for local
    folders and cache snapshots). hint: appended to the "wrong folder" message.
    """
    p = Path(path_or_id).expanduser()
    if not p.is_dir():
        if p.exists() or str(path_or_id).count("/") != 1:
            raise WeightsNotFoundError(f"{path_or_id}: {what} folder not found")
        try:
            from huggingface_hub import snapshot_download

            p = Path(snapshot_download(str(path_or_id), local_files_only=True))
        except Exception:  # noqa: BLE001 - any hub failure means: not available offline
            raise WeightsNotFoundError(
                f"{path_or_id}: not a local folder and not in the Hugging Face cache; download "
                f"it with `huggingface-cli download {path_or_id}` where there is internet, then "
                "pass the folder (csg never downloads)") from None
    if marker is not None and not (p / marker).is_file():
        article = "an" if what[:1].lower() in "aeiou" else "a"
        raise WeightsNotFoundError(f"{p}: not {article} {what} (no {marker})"
                                   + (f"; {hint}" if hint else ""))
    return p

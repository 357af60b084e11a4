"""``csg edit``: a local browser editor for skeleton JSON files.

A page (plain HTML + JS, package data) over a small JSON API (Starlette, served by uvicorn on
127.0.0.1 with a per-session token): skeleton over the photo, a timeline with the waveform, joint
and rigid part edits spread over ranges with easing, locked frames, stage-1 re-generation of the
unlocked frames of a range, undo / redo, atomic save, OpenPose export and rendering to mp4.

Pieces: :mod:`.state` (the document and its history, pure numpy), :mod:`.regen` (stage 1 with
known frames), :mod:`.render` (stage 2, protocol v2), :mod:`.session` (files, jobs),
:mod:`.server` (HTTP), :mod:`.cli`. The API is documented in ``docs/editor.md``.
"""

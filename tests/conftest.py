"""Test harness: offline, no network sockets, tiny components built in code."""
from __future__ import annotations

import os
import socket

# Before any Hugging Face import: never reach a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import pytest

_real_connect = socket.socket.connect


def _guarded_connect(self, address):
    if self.family == socket.AF_UNIX:
        return _real_connect(self, address)
    raise RuntimeError(f"test tried to open a network connection to {address!r}")


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)
    yield


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def ref_pose():
    """A plausible one-frame 133-point skeleton on a non-square 48x64 (H x W) canvas... scaled up
    to 480x640 so that pixel maths is meaningful."""
    from tests.helpers import make_reference_pose

    return make_reference_pose(height=480, width=640)

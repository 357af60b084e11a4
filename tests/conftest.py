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


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tiny models run faster single-threaded on the 2-core CI box than oversubscribed."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def ref_pose():
    """A plausible one-frame 133-point skeleton on a non-square 480x640 (H x W) canvas."""
    from tests.helpers import make_reference_pose

    return make_reference_pose(height=480, width=640)

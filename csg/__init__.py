"""csg: audio-driven co-speech gesture video. Core: the pose contract, IO, configs, CLI."""
from .errors import CsgError
from .pose import PoseSequence

__version__ = "0.1.0"
__all__ = ["CsgError", "PoseSequence", "__version__"]

"""The two stages chained: ``CoSpeechPipeline`` and ``csg run``. Nothing imports this package."""
from .config import RunConfig, load_run_config
from .pipeline import CoSpeechOutput, CoSpeechPipeline

__all__ = ["CoSpeechOutput", "CoSpeechPipeline", "RunConfig", "load_run_config"]

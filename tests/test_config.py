"""csg.config: YAML + --set overrides into frozen dataclasses."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from csg.config import load_config
from csg.errors import ConfigError


@dataclass(frozen=True)
class Cfg:
    lr: float = 1.0
    steps: int = 2


@pytest.mark.parametrize("text, value", [("2e-4", 2e-4), ("1E3", 1000.0), ("-3.5e-2", -0.035),
                                         ("0.5", 0.5), ("3", 3.0)])
def test_float_overrides_accept_scientific_notation(text, value):
    # PyYAML (YAML 1.1) reads "2e-4" as a string; the docstring's own example must work
    assert load_config(Cfg, None, [f"lr={text}"]).lr == pytest.approx(value)


@pytest.mark.parametrize("text", ["abc", "1e", "e5", "nan", "inf"])
def test_float_overrides_refuse_words(text):
    with pytest.raises(ConfigError, match="lr: expected float"):
        load_config(Cfg, None, [f"lr={text}"])


def test_int_fields_stay_strict():
    with pytest.raises(ConfigError, match="steps: expected int"):
        load_config(Cfg, None, ["steps=1e3"])


def test_flag_overrides_puts_given_flags_after_the_sets():
    from csg.config import flag_overrides, parse_overrides

    items = flag_overrides(["lr=1", "out=a"], {"out": "b", "seed": None, "model.dim": 8})
    assert items == ["lr=1", "out=a", "out=b", "model.dim=8"]
    assert parse_overrides(items) == {"lr": 1, "out": "b", "model": {"dim": 8}}  # the flag wins

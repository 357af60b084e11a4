"""What the page needs to draw and pick joints: names, edges with colours, groups and parts."""
from __future__ import annotations

from functools import lru_cache
from typing import Any

from csg import keypoints as K
from csg.draw import HAND_COLORS, OP18_COLORS

from .state import PARTS


@lru_cache(maxsize=1)
def layout() -> dict[str, Any]:
    """JSON-ready: ``names`` (133), ``edges`` [[i, j, "#rrggbb"], ...], ``groups`` name -> [start,
    stop), ``parts`` name -> {"joints": [...], "pivot": [...]}, ``wrists`` {left, right}."""
    hexc = lambda c: "#%02x%02x%02x" % tuple(c)  # noqa: E731
    edges = [[a, b, hexc(OP18_COLORS[i % len(OP18_COLORS)])] for i, (a, b) in
             enumerate(K.BODY_EDGES)]
    left_foot = {K.LEFT_ANKLE, *range(K.FEET.start, K.FEET.start + 3)}
    edges += [[a, b, hexc(OP18_COLORS[11] if a in left_foot else OP18_COLORS[8])]
              for a, b in K.FEET_EDGES]
    for root in (K.LEFT_HAND_ROOT, K.RIGHT_HAND_ROOT):
        edges += [[root + a, root + b, hexc(HAND_COLORS[i])] for i, (a, b) in
                  enumerate(K.HAND_EDGES)]
    groups = {name: [g.start, g.stop] for name, g in (
        ("body", K.BODY), ("feet", K.FEET), ("face", K.FACE), ("left_hand", K.LEFT_HAND),
        ("right_hand", K.RIGHT_HAND))}
    return {"names": list(K.KEYPOINT_NAMES), "edges": edges, "groups": groups,
            "parts": {n: {"joints": j, "pivot": list(p)} for n, (j, p) in PARTS.items()},
            "wrists": {"left": K.LEFT_WRIST, "right": K.RIGHT_WRIST}}

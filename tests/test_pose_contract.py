"""The csg.pose contract: lossless JSON, one clear error per fault, the layout's named slices, and
the JSON Schema in docs/pose.schema.json."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from csg import keypoints as K
from csg.errors import PoseFormatError
from csg.pose import PoseSequence
from tests.helpers import make_reference_pose

SCHEMA = Path(__file__).resolve().parents[1] / "docs" / "pose.schema.json"
H, W = 48, 64


def _random_pose(rng, t=3):
    kp = rng.uniform(-10, 70, size=(t, K.NUM_KEYPOINTS, 3)).astype(np.float32)
    kp[..., 2] = rng.uniform(0, 1, size=(t, K.NUM_KEYPOINTS)).astype(np.float32)
    kp[0, 0] = (np.float32(1 / 3), np.float32(1e-7), np.float32(1.0))  # awkward decimals
    return PoseSequence(kp, fps=29.97, width=W, height=H, meta={"backend": "test", "n": 1})


def test_round_trip_is_bit_exact(tmp_path, rng):
    pose = _random_pose(rng)
    path = pose.save(tmp_path / "p.json")
    back = PoseSequence.load(path)
    assert back.keypoints.dtype == np.float32
    assert back.keypoints.tobytes() == pose.keypoints.tobytes()
    assert (back.fps, back.width, back.height, back.meta) == (29.97, W, H, pose.meta)
    assert back.size_hw == (H, W)
    again = back.save(tmp_path / "q.json")  # load -> save is stable text
    assert again.read_text() == path.read_text()


def _doc() -> dict:
    return json.loads(make_reference_pose(H, W).to_json())


def _load_text(tmp_path, text: str) -> PoseSequence:
    p = tmp_path / "bad.json"
    p.write_text(text)
    return PoseSequence.load(p)


def _load_doc(tmp_path, d) -> PoseSequence:
    return _load_text(tmp_path, json.dumps(d))


def _edit(**changes):
    def f(d):
        d.update(changes)
        return d
    return f


def _set_point(t, j, value):
    def f(d):
        d["frames"][t][j] = value
        return d
    return f


def _drop(key):
    def f(d):
        del d[key]
        return d
    return f


def _ragged(d):
    d["frames"] = [d["frames"][0], d["frames"][0][:-1]]
    return d


BAD_DOCS = {
    "missing key": (_drop("fps"), r"missing key\(s\) fps"),
    "unknown key": (_edit(colour="red"), r"unknown key\(s\) colour"),
    "wrong point count": (lambda d: {**d, "frames": [d["frames"][0][:132]]},
                          r"frame 0: has 132 points, expected 133"),
    "fps zero": (_edit(fps=0), r"fps must be a positive number"),
    "fps negative": (_edit(fps=-25), r"fps must be a positive number"),
    "ragged frames": (_ragged, r"frame 1: has 132 points"),
    "wrong format": (_edit(format="openpose"), r"format must be 'csg.pose'"),
    "wrong version": (_edit(version=2), r"unsupported version 2"),
    "wrong layout": (_edit(layout="coco_17"), r"layout must be 'coco_wholebody_133'"),
    "score above 1": (_set_point(0, 95, [1.0, 2.0, 1.5]),
                      r"frame 0, keypoint 95 \(left_hand_thumb_4\): score 1.5 is outside \[0, 1\]"),
    "score below 0": (_set_point(0, 3, [1.0, 2.0, -0.2]),
                      r"frame 0, keypoint 3 \(left_ear\): score -0.2 is outside"),
    "empty frames": (_edit(frames=[]), r"'frames' is empty"),
    "point not a triple": (_set_point(0, 7, [1.0, 2.0]), r"frame 0, keypoint 7 \(left_elbow\)"),
    "width not whole": (_edit(width=64.5), r"width must be a whole number"),
}


@pytest.mark.parametrize("name", sorted(BAD_DOCS))
def test_each_fault_raises_a_clear_error(tmp_path, name):
    fix, pattern = BAD_DOCS[name]
    with pytest.raises(PoseFormatError, match=pattern) as e:
        _load_doc(tmp_path, fix(_doc()))
    assert "bad.json" in str(e.value)  # names the file
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("literal, what", [("NaN", "nan"), ("Infinity", "inf"),
                                           ("-Infinity", "-inf")])
def test_non_finite_json_literals_are_rejected(tmp_path, literal, what):
    text = make_reference_pose(H, W).to_json()
    # replace the y value of frame 0, keypoint 2 (right_eye) by the literal
    frame0 = text.split("\n")[1]
    pts = frame0.split("], [")
    x, _, s = pts[2].split(", ")
    pts[2] = ", ".join([x, literal, s])
    text = text.replace(frame0, "], [".join(pts))
    with pytest.raises(PoseFormatError, match=rf"frame 0, keypoint 2 \(right_eye\): y is {what}"):
        _load_text(tmp_path, text)


def test_not_json_and_not_an_object(tmp_path):
    with pytest.raises(PoseFormatError, match=r"bad.json: invalid JSON at line 1"):
        _load_text(tmp_path, "{frames: oops")
    with pytest.raises(PoseFormatError, match=r"top level must be a JSON object, got list"):
        _load_text(tmp_path, "[1, 2, 3]")
    with pytest.raises(PoseFormatError, match=r"not found"):
        PoseSequence.load(tmp_path / "nothing.json")


def test_json_with_a_byte_order_mark_loads(tmp_path):
    """Windows editors save UTF-8 with a BOM; the hand-edited file still reads."""
    pose = make_reference_pose()
    pose.save(tmp_path / "p.json")
    bom = tmp_path / "bom.json"
    bom.write_bytes(b"\xef\xbb\xbf" + (tmp_path / "p.json").read_bytes())
    np.testing.assert_array_equal(PoseSequence.load(bom).keypoints, pose.keypoints)


def test_save_refuses_invalid_and_leaves_nothing(tmp_path):
    pose = make_reference_pose(H, W)
    pose.keypoints[0, 100, 0] = np.nan
    with pytest.raises(PoseFormatError, match=r"keypoint 100 .*x is nan"):
        pose.save(tmp_path / "p.json")
    assert list(tmp_path.iterdir()) == []


def test_named_slices_have_documented_sizes():
    sizes = {"BODY": 17, "FEET": 6, "FACE": 68, "LEFT_HAND": 21, "RIGHT_HAND": 21, "HANDS": 42,
             "MOUTH": 20, "INNER_LIPS": 8, "OUTER_LIPS": 12, "JAW": 17, "RIGHT_EYE": 6,
             "LEFT_EYE": 6, "RIGHT_BROW": 5, "LEFT_BROW": 5, "NOSE_BRIDGE": 4, "NOSE_BOTTOM": 5}
    for name, n in sizes.items():
        assert len(range(K.NUM_KEYPOINTS)[getattr(K, name)]) == n, name
    groups = [K.BODY, K.FEET, K.FACE, K.LEFT_HAND, K.RIGHT_HAND]
    assert sorted(K.indices(*groups).tolist()) == list(range(K.NUM_KEYPOINTS))
    assert sum(len(range(133)[g]) for g in groups) == K.NUM_KEYPOINTS  # a partition
    assert len(K.KEYPOINT_NAMES) == len(set(K.KEYPOINT_NAMES)) == K.NUM_KEYPOINTS


def test_mouth_opening_grows_as_inner_lips_part():
    xy = make_reference_pose(H * 10, W * 10).xy[0].copy()
    openings = []
    for gap in (0.0, 2.0, 6.0):
        k = xy.copy()
        k[K.INNER_LIPS.start + 5:K.INNER_LIPS.start + 8, 1] += gap  # lower inner lip, iBUG 65-67
        openings.append(float(K.mouth_opening(k)))
    assert openings[0] < openings[1] < openings[2]
    # scale-free: the same face twice as big has the same opening
    assert np.isclose(K.mouth_opening(xy * 2), K.mouth_opening(xy), rtol=1e-5)


# --- JSON Schema ----------------------------------------------------------------------------------

def _mini_validate(inst, schema, path="$"):
    """A small JSON Schema checker for the keywords docs/pose.schema.json uses (jsonschema is not
    a dependency). Returns a list of error strings."""
    errs = []
    t = schema.get("type")
    types = {"object": dict, "array": list, "string": str, "number": (int, float),
             "integer": (int, float)}
    if schema is False:
        return [f"{path}: not allowed"]
    if t and (not isinstance(inst, types[t]) or isinstance(inst, bool)
              or (t == "integer" and float(inst) != int(inst))):
        return [f"{path}: not {t}"]
    if "const" in schema and inst != schema["const"]:
        errs.append(f"{path}: != {schema['const']!r}")
    if "exclusiveMinimum" in schema and not inst > schema["exclusiveMinimum"]:
        errs.append(f"{path}: <= {schema['exclusiveMinimum']}")
    if "minimum" in schema and inst < schema["minimum"]:
        errs.append(f"{path}: < minimum")
    if "maximum" in schema and inst > schema["maximum"]:
        errs.append(f"{path}: > maximum")
    if isinstance(inst, dict):
        errs += [f"{path}: missing {k}" for k in schema.get("required", []) if k not in inst]
        props = schema.get("properties", {})
        if schema.get("additionalProperties") is False:
            errs += [f"{path}: extra {k}" for k in inst if k not in props]
        for k, sub in props.items():
            if k in inst:
                errs += _mini_validate(inst[k], sub, f"{path}.{k}")
    if isinstance(inst, list):
        if len(inst) < schema.get("minItems", 0) or len(inst) > schema.get("maxItems", 1 << 30):
            errs.append(f"{path}: length {len(inst)}")
        prefix = schema.get("prefixItems", [])
        for i, v in enumerate(inst):
            sub = prefix[i] if i < len(prefix) else schema.get("items", {})
            errs += [f"{path}[{i}]: not allowed"] if sub is False else _mini_validate(
                v, sub, f"{path}[{i}]")
            if len(errs) > 5:
                break
    return errs


def _validator():
    schema = json.loads(SCHEMA.read_text())
    try:
        import jsonschema
    except ImportError:
        return schema, lambda inst: _mini_validate(inst, schema)
    v = jsonschema.Draft202012Validator(schema)
    jsonschema.Draft202012Validator.check_schema(schema)
    return schema, lambda inst: [e.message for e in v.iter_errors(inst)]


def test_schema_matches_the_contract(tmp_path, rng):
    from csg import pose as P

    schema, validate = _validator()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert set(schema["required"]) == set(P._REQUIRED_KEYS)
    assert set(schema["properties"]) == set(P._REQUIRED_KEYS) | set(P._OPTIONAL_KEYS)
    frame = schema["properties"]["frames"]["items"]
    assert frame["minItems"] == frame["maxItems"] == K.NUM_KEYPOINTS
    assert schema["properties"]["layout"]["const"] == K.LAYOUT
    assert schema["properties"]["format"]["const"] == P.FORMAT

    saved = json.loads(_random_pose(rng).save(tmp_path / "p.json").read_text())
    assert validate(saved) == []
    for name, (fix, _) in BAD_DOCS.items():
        assert validate(fix(json.loads(json.dumps(saved)))), f"schema accepts: {name}"


def test_frames_text_is_dragon4_shortest_for_awkward_values():
    """The vectorised writer gives, value by value, the text of numpy's Dragon4 shortest
    positional form (the reference below), for values that stress it: powers of ten and two and
    their float32 neighbours, negative zero, extremes written by the Dragon4 fallback."""
    from csg.pose import _format_frames

    def reference(kp):
        f = lambda v: np.format_float_positional(v, unique=True, trim="-")  # noqa: E731
        return ",\n".join("[" + ", ".join("[" + ", ".join(f(v) for v in pt) + "]" for pt in fr)
                          + "]" for fr in kp)

    g = np.random.default_rng(7)
    tens = (10.0 ** g.integers(-14, 17, (2, 133, 3))).astype(np.float32)
    cases = [
        g.uniform(-2000, 2000, (2, 133, 3)),
        10 ** g.uniform(-30, 30, (2, 133, 3)) * g.choice([-1, 1], (2, 133, 3)),
        tens, np.nextafter(tens, np.float32(0)), np.nextafter(tens, np.float32(np.inf)),
        2.0 ** g.integers(-60, 60, (2, 133, 3)),
        np.round(g.uniform(0, 512, (2, 133, 3)), 2),
        np.zeros((1, 133, 3)),
    ]
    special = np.zeros((1, 133, 3))
    special[0, :6] = [[-0.0, 1e-7, 1 / 3], [2 ** -126, 1e-45, 3.4e38], [123456789, 0.1, 100],
                      [1e-13, 9.999999e-14, 1e15], [-1e-20, 1e16, 1e20], [0.5, 12, -7.25]]
    cases.append(special)
    for kp in cases:
        kp = np.asarray(kp, np.float32)
        text = _format_frames(kp)
        assert text == reference(kp)
        back = np.asarray(json.loads("[" + text + "]"), np.float64).astype(np.float32)
        assert np.array_equal(back, kp)


@pytest.mark.parametrize("value", ["true", '"1.5"', "null", "[1]"])
def test_loader_fast_path_still_refuses_non_numbers(tmp_path, value):
    """A (T, 133, 3) block with one non-number is refused naming the point, as before."""
    text = make_reference_pose(H, W).to_json()
    frame0 = text.split("\n")[1]
    pts = frame0.split("], [")
    x, _, s = pts[5].split(", ")
    text = text.replace(frame0, "], [".join(pts[:5] + [", ".join([x, value, s])] + pts[6:]))
    with pytest.raises(PoseFormatError, match=r"frame 0, keypoint 5 \(left_shoulder\): expected"):
        _load_text(tmp_path, text)


def test_an_integer_beyond_any_float_is_named(tmp_path):
    d = _doc()
    d["frames"][0][5][1] = 10 ** 400
    with pytest.raises(PoseFormatError, match=r"frame 0, keypoint 5 \(left_shoulder\): y is an "
                                              r"integer of 401 digits"):
        _load_doc(tmp_path, d)


def test_a_confident_point_far_off_the_canvas_is_named():
    p = make_reference_pose(480, 640)
    kp = p.keypoints.copy()
    kp[0, K.LEFT_EYE_C, 0] = 1e9  # a hand-edit with extra digits
    with pytest.raises(PoseFormatError, match=r"keypoint 1 \(left_eye\).*far outside the 640x480"):
        p.replace(keypoints=kp).validate("p.json")
    kp[0, K.LEFT_EYE_C, 2] = 0.0  # an absent point may sit anywhere
    p.replace(keypoints=kp).validate("p.json")
    kp = p.keypoints.copy()
    kp[0, K.NOSE, 0] = -1500.0  # off the canvas, but within 4 canvas sides: a pose, not a typo
    p.replace(keypoints=kp).validate("p.json")

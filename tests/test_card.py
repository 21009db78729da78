"""Tests for soundbatch.card: parsing the model card and checking it against the graph."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from soundbatch.card import (
    LogMelFeatures,
    ModelCard,
    WaveformFeatures,
    card_to_json,
    check_card_against_graph,
    parse_card,
)
from soundbatch.errors import ModelCardError

SPEC = Path("/work/shared/specs/model-card.md")

EXAMPLE = {
    "name": "urban-sbcnn",
    "version": "1.0.0",
    "classes": ["air_conditioner", "car_horn", "..."],
    "background_classes": [],
    "output": {"name": "probs", "activation": "softmax"},
    "input": {"name": "mel", "layout": "NCHW"},
    "features": {
        "kind": "logmel",
        "sample_rate": 22050,
        "n_fft": 1024, "win_length": 1024, "hop_length": 256,
        "window": "hann", "center": False,
        "n_mels": 64, "fmin": 0.0, "fmax": 11025.0,
        "htk": False, "mel_norm": "slaney", "power": 2.0,
        "log": "log", "log_eps": 1e-9,
        "normalize": "window",
    },
    "window": {"frames": 86, "hop_frames": 43},
    "defaults": {"rms_gate_dbfs": -60.0, "ood_threshold": 0.5},
}

WAVEFORM = {
    "name": "yamnet-ish",
    "version": "0.1",
    "classes": ["speech", "music", "dog"],
    "output": {"name": "scores", "activation": "sigmoid"},
    "input": {"name": "waveform", "layout": "NT"},
    "features": {"kind": "waveform", "sample_rate": 16000},
    "window": {"samples": 15600, "hop_samples": 7800},
}


def _card(**changes):
    data = copy.deepcopy(EXAMPLE)
    for dotted, value in changes.items():
        node = data
        *parents, last = dotted.split("__")
        for p in parents:
            node = node[p]
        node[last] = value
    return data


def _parse(data):
    return parse_card(json.dumps(data))


def _spec_example_json() -> str:
    text = SPEC.read_text()
    return re.search(r"```json\n(.*?)```", text, re.S).group(1)


# --- parse_card: valid cards ---------------------------------------------------


def test_parse_card_example_from_spec():
    card = parse_card(_spec_example_json())
    assert isinstance(card, ModelCard)
    assert card.name == "urban-sbcnn" and card.version == "1.0.0"
    assert card.classes == ["air_conditioner", "car_horn", "..."]
    assert card.output.kind == "softmax"
    assert isinstance(card.features, LogMelFeatures)
    assert card.features.n_mels == 64
    assert card.input_shape() == (1, 64, 86)
    assert card.hop_samples == 43 * 256
    assert card.window_samples == 86 * 256
    assert card.hop_s == pytest.approx(43 * 256 / 22050)
    assert card.window_s == pytest.approx(86 * 256 / 22050)
    assert card.thresholds() == [0.5, 0.5, 0.5]
    assert card.defaults.rms_gate_dbfs == -60.0


def test_parse_card_accepts_bytes():
    card = parse_card(json.dumps(EXAMPLE).encode())
    assert card.name == "urban-sbcnn"


def test_parse_card_round_trips_through_card_to_json():
    card = _parse(EXAMPLE)
    again = parse_card(card_to_json(card))
    assert again == card


@pytest.mark.parametrize(
    ("layout", "shape"), [("NCHW", (1, 64, 86)), ("NHWC", (64, 86, 1)), ("NHW", (64, 86))]
)
def test_parse_card_logmel_layouts(layout, shape):
    assert _parse(_card(input__layout=layout)).input_shape() == shape


@pytest.mark.parametrize(("layout", "shape"), [("NT", (15600,)), ("NCT", (1, 15600))])
def test_parse_card_waveform_layouts(layout, shape):
    data = copy.deepcopy(WAVEFORM)
    data["input"]["layout"] = layout
    card = _parse(data)
    assert isinstance(card.features, WaveformFeatures)
    assert card.input_shape() == shape
    assert card.hop_samples == 7800
    assert card.hop_s == pytest.approx(7800 / 16000)


def test_parse_card_sigmoid_per_class_thresholds():
    data = copy.deepcopy(WAVEFORM)
    data["defaults"] = {"rms_gate_dbfs": -50.0, "ood_threshold": {"speech": 0.7, "dog": 0.2}}
    card = _parse(data)
    assert card.output.kind == "sigmoid"
    assert card.defaults.ood_threshold == {"speech": 0.7, "dog": 0.2}
    # classes not in the map fall back to 0.5
    assert card.thresholds() == [0.7, 0.5, 0.2]


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (None, [0.5, 0.5, 0.5]),
        (0.8, [0.8, 0.8, 0.8]),
        ({"car_horn": 0.9}, [0.5, 0.9, 0.5]),
    ],
)
def test_thresholds_override(override, expected):
    assert _parse(EXAMPLE).thresholds(override) == expected


def test_thresholds_map_override_falls_back_to_card_number():
    card = _parse(_card(defaults__ood_threshold=0.3))
    assert card.thresholds({"car_horn": 0.9}) == [0.3, 0.9, 0.3]


@pytest.mark.parametrize("apply", ["softmax", "sigmoid"])
def test_parse_card_logits_with_apply(apply):
    card = _parse(_card(output={"name": "logits", "activation": "logits", "apply": apply}))
    assert card.output.kind == apply


# --- parse_card: invalid cards --------------------------------------------------


def test_parse_card_logits_without_apply():
    with pytest.raises(ModelCardError, match="output.apply"):
        _parse(_card(output={"activation": "logits"}))


def test_parse_card_apply_without_logits():
    with pytest.raises(ModelCardError, match='output.apply is only for activation="logits"'):
        _parse(_card(output={"activation": "softmax", "apply": "sigmoid"}))


@pytest.mark.parametrize("layout", ["NT", "NCT"])
def test_parse_card_waveform_layout_with_logmel_features(layout):
    with pytest.raises(ModelCardError, match=rf"input.layout={layout} does not fit features.kind=logmel"):
        _parse(_card(input__layout=layout))


@pytest.mark.parametrize("layout", ["NCHW", "NHWC", "NHW"])
def test_parse_card_logmel_layout_with_waveform_features(layout):
    data = copy.deepcopy(WAVEFORM)
    data["input"]["layout"] = layout
    with pytest.raises(ModelCardError, match=rf"input.layout={layout} does not fit features.kind=waveform"):
        _parse(data)


def test_parse_card_unknown_layout():
    with pytest.raises(ModelCardError, match=r"input.layout.*'NCWH'"):
        _parse(_card(input__layout="NCWH"))


def test_parse_card_logmel_with_sample_window():
    with pytest.raises(ModelCardError, match="logmel needs window.frames"):
        _parse(_card(window={"samples": 1000, "hop_samples": 500}))


@pytest.mark.parametrize("reserved", ["silence", "unknown"])
def test_parse_card_reserved_class_names(reserved):
    with pytest.raises(ModelCardError, match=rf"reserved labels \['{reserved}'\]"):
        _parse(_card(classes=["dog", reserved]))


def test_parse_card_duplicate_classes():
    with pytest.raises(ModelCardError, match="duplicates"):
        _parse(_card(classes=["dog", "dog"]))


def test_parse_card_background_class_not_in_classes():
    with pytest.raises(ModelCardError, match=r"background_classes \['other'\] are not in classes"):
        _parse(_card(classes=["dog", "siren"], background_classes=["other"]))


def test_parse_card_background_class_in_classes_accepted():
    card = _parse(_card(classes=["dog", "other"], background_classes=["other"]))
    assert card.background_classes == ["other"]


def test_parse_card_threshold_map_naming_unknown_class():
    with pytest.raises(ModelCardError, match=r"ood_threshold names unknown classes \['cat'\]"):
        _parse(_card(defaults__ood_threshold={"cat": 0.4}))


@pytest.mark.parametrize("text", ["", "{", "not json", '{"name": "x",}'])
def test_parse_card_invalid_json(text):
    with pytest.raises(ModelCardError, match="my.onnx: the card is not valid JSON"):
        parse_card(text, source="my.onnx")


@pytest.mark.parametrize(
    ("changes", "pattern"),
    [
        ({"features__n_mels": 0}, r"features.logmel.n_mels.*\(got 0\)"),
        ({"features__hop_length": -1}, r"hop_length.*\(got -1\)"),
        ({"features__win_length": 2048}, r"win_length=2048 must be <= features.n_fft=1024"),
        ({"features__fmax": 20000.0}, r"fmax=20000.0"),
        ({"window__frames": 0}, r"frames.*\(got 0\)"),
        ({"classes": []}, r"classes"),
        ({"features__mystery": 1}, r"mystery"),
    ],
)
def test_parse_card_bad_field_named(changes, pattern):
    with pytest.raises(ModelCardError, match=pattern):
        _parse(_card(**changes))


@pytest.mark.parametrize("field", ["name", "version", "classes", "output", "input", "features", "window"])
def test_parse_card_missing_field_named(field):
    data = copy.deepcopy(EXAMPLE)
    del data[field]
    with pytest.raises(ModelCardError, match=rf"card: invalid model card: .*{field}"):
        _parse(data)


def test_parse_card_error_keeps_cause():
    with pytest.raises(ModelCardError) as info:
        _parse(_card(output={"activation": "logits"}))
    assert info.value.__cause__ is not None


def test_parse_card_is_frozen():
    card = _parse(EXAMPLE)
    with pytest.raises(Exception, match="frozen"):
        card.name = "other"


# --- check_card_against_graph ---------------------------------------------------


def test_check_card_against_graph_matching():
    card = _parse(EXAMPLE)
    got = check_card_against_graph(card, [("mel", [1, 1, 64, 86])], [("probs", [1, 3])])
    assert got == ("mel", "probs")


@pytest.mark.parametrize(
    "in_shape",
    [
        ["batch", 1, 64, 86],
        [None, 1, 64, 86],
        [-1, 1, 64, 86],
        ["N", "C", "H", "W"],
        [None, None, None, None],
        [0, 1, 64, 86],
    ],
)
def test_check_card_against_graph_symbolic_dims_accepted(in_shape):
    card = _parse(EXAMPLE)
    assert check_card_against_graph(card, [("mel", in_shape)], [("probs", ["N", None])]) == ("mel", "probs")


@pytest.mark.parametrize("in_shape", [[None, 64, 86], [None, 1, 1, 64, 86], [None]])
def test_check_card_against_graph_rank_mismatch(in_shape):
    card = _parse(EXAMPLE)
    with pytest.raises(
        ModelCardError, match=rf"input.layout=NCHW means rank 4 .* 'mel' has rank {len(in_shape)}"
    ):
        check_card_against_graph(card, [("mel", in_shape)], [("probs", [None, 3])])


def test_check_card_against_graph_n_mels_mismatch_names_both_values():
    card = _parse(EXAMPLE)
    with pytest.raises(ModelCardError, match=r"card features.n_mels=64, but graph input 'mel' axis 2 is 128"):
        check_card_against_graph(card, [("mel", ["N", 1, 128, 86])], [("probs", ["N", 3])])


def test_check_card_against_graph_frames_mismatch_nhwc():
    card = _parse(_card(input__layout="NHWC"))
    with pytest.raises(ModelCardError, match=r"card window.frames=86, but graph input 'mel' axis 2 is 100"):
        check_card_against_graph(card, [("mel", ["N", 64, 100, 1])], [("probs", ["N", 3])])


def test_check_card_against_graph_waveform_samples_mismatch():
    card = _parse(WAVEFORM)
    with pytest.raises(ModelCardError, match=r"card window.samples=15600, but graph input 'waveform' axis 1 is 16000"):
        check_card_against_graph(card, [("waveform", [None, 16000])], [("scores", [None, 3])])


@pytest.mark.parametrize("n_out", [2, 521])
def test_check_card_against_graph_classes_count_mismatch(n_out):
    card = _parse(EXAMPLE)
    with pytest.raises(ModelCardError, match=rf"card lists 3 classes, but graph output 'probs' has {n_out}"):
        check_card_against_graph(card, [("mel", ["N", 1, 64, 86])], [("probs", ["N", n_out])])


@pytest.mark.parametrize("out_shape", [["N"], ["N", 1, 3], []])
def test_check_card_against_graph_output_rank(out_shape):
    card = _parse(EXAMPLE)
    with pytest.raises(ModelCardError, match=r"must be \[N, n_classes\]"):
        check_card_against_graph(card, [("mel", ["N", 1, 64, 86])], [("probs", out_shape)])


def test_check_card_against_graph_source_in_message():
    card = _parse(EXAMPLE)
    with pytest.raises(ModelCardError, match=r"^s3://b/m.onnx: "):
        check_card_against_graph(card, [("mel", [None, 1, 64, 86])], [("probs", [None, 9])], source="s3://b/m.onnx")


def test_check_card_against_graph_picks_named_tensors_among_several():
    card = _parse(EXAMPLE)
    inputs = [("aux", [None, 7]), ("mel", [None, 1, 64, 86])]
    outputs = [("embedding", [None, 1024]), ("probs", [None, 3])]
    assert check_card_against_graph(card, inputs, outputs) == ("mel", "probs")


@pytest.mark.parametrize("which", ["input", "output"])
def test_check_card_against_graph_card_name_absent_from_graph(which):
    card = _parse(EXAMPLE)
    inputs = [("spectrogram", [None, 1, 64, 86])] if which == "input" else [("mel", [None, 1, 64, 86])]
    outputs = [("probs", [None, 3])] if which == "input" else [("output_0", [None, 3])]
    wanted = "'mel'" if which == "input" else "'probs'"
    graph = "spectrogram" if which == "input" else "output_0"
    with pytest.raises(ModelCardError, match=rf"card {which}.name={wanted}, but the graph has \['{graph}'\]"):
        check_card_against_graph(card, inputs, outputs)


def test_check_card_against_graph_no_name_single_tensor_is_used():
    card = _parse(_card(input={"layout": "NCHW"}, output={"activation": "softmax"}))
    assert card.input.name is None and card.output.name is None
    got = check_card_against_graph(card, [("input_1", [None, 1, 64, 86])], [("dense_3", [None, 3])])
    assert got == ("input_1", "dense_3")


@pytest.mark.parametrize("which", ["input", "output"])
def test_check_card_against_graph_no_name_several_tensors(which):
    card = _parse(_card(input={"layout": "NCHW"}, output={"activation": "softmax"}))
    inputs = [("a", [None, 1, 64, 86])]
    outputs = [("p", [None, 3])]
    if which == "input":
        inputs.append(("b", [None, 2]))
    else:
        outputs.append(("q", [None, 8]))
    with pytest.raises(ModelCardError, match=rf"graph has tensors .*; set {which}.name in the card"):
        check_card_against_graph(card, inputs, outputs)


@pytest.mark.parametrize("threshold", [1.5, -0.1, {"car_horn": 2.0}])
def test_parse_card_ood_threshold_out_of_range(threshold):
    # The same quantity is checked to be a probability in the run's settings (config.py);
    # a card default of 1.5 would silently make every window "unknown".
    with pytest.raises(ModelCardError, match="ood_threshold"):
        _parse(_card(defaults__ood_threshold=threshold))


def test_thresholds_override_naming_unknown_class_rejected():
    # A run's per-class map with a typo must not be silently ignored (the card check does
    # the same for the card's own defaults).
    card = _parse(EXAMPLE)
    with pytest.raises(ValueError, match="car-horn"):
        card.thresholds({"car-horn": 0.9})

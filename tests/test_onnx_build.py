"""Tests of soundbatch.onnx_build: SB-CNN, band-energy test models, MACs, card embedding."""

from __future__ import annotations

import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from soundbatch.card import CARD_KEY, card_to_json, parse_card
from soundbatch.errors import ConfigError, ModelCardError
from soundbatch.onnx_build import (
    build_band_energy_model,
    build_sbcnn,
    count_macs,
    embed_card,
    make_card,
)

LOGMEL_LAYOUTS = ["NCHW", "NHWC", "NHW"]
WAVEFORM_LAYOUTS = ["NT", "NCT"]
ACTIVATIONS = [("softmax", None), ("sigmoid", None), ("logits", "softmax"), ("logits", "sigmoid")]
SBCNN_MACS_64X44 = 14.5e6


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    return session.run(None, {inp.name: x.astype(np.float32)})[0]


def to_layout(x: np.ndarray, layout: str) -> np.ndarray:
    return {"NCHW": x[:, None], "NHWC": x[..., None], "NHW": x, "NT": x, "NCT": x[:, None]}[layout]


def low_band_windows(n: int, *, n_mels: int = 64, frames: int = 44, band: slice = slice(0, 8)) -> np.ndarray:
    """Standardised log-mel windows: noise plus a strong steady tone in ``band``."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((n, n_mels, frames))
    x[:, band, :] += 6.0
    x = (x - x.mean(axis=(1, 2), keepdims=True)) / x.std(axis=(1, 2), keepdims=True)
    return x.astype(np.float32)


def tones(freqs: list[float], *, sample_rate: int, samples: int) -> np.ndarray:
    t = np.arange(samples) / sample_rate
    return np.stack([0.5 * np.sin(2 * np.pi * f * t) for f in freqs]).astype(np.float32)


# --- count_macs / build_sbcnn ------------------------------------------------


def test_count_macs_sbcnn_64x44_within_10_percent_of_14_5M():
    model = build_sbcnn(make_card(n_mels=64, frames=44, classes=[f"c{i}" for i in range(10)]))
    macs = count_macs(model)
    print(f"SB-CNN at 64 mels x 44 frames: {macs:,} MACs per window")  # shown with pytest -s
    assert abs(macs - SBCNN_MACS_64X44) / SBCNN_MACS_64X44 < 0.10


def test_count_macs_matches_hand_count():
    # conv1 64*44*24*25 + conv2 16*22*48*24*25 + conv3 4*11*48*48*25 + fc1 2112*64 + fc2 64*3
    expected = 1_689_600 + 10_137_600 + 2_534_400 + 135_168 + 192
    assert count_macs(build_sbcnn(make_card())) == expected


@pytest.mark.parametrize("layout", LOGMEL_LAYOUTS)
def test_build_sbcnn_input_shape_per_layout(layout):
    model = build_sbcnn(make_card(layout=layout, n_mels=32, frames=20))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    shape = [d.dim_param or d.dim_value for d in dims]
    assert shape == ["N", *make_card(layout=layout, n_mels=32, frames=20).input_shape()]


@pytest.mark.parametrize("layout", LOGMEL_LAYOUTS)
def test_build_sbcnn_layouts_compute_the_same_function(layout):
    x = np.random.default_rng(0).standard_normal((5, 64, 44)).astype(np.float32)
    reference = run(build_sbcnn(make_card(layout="NCHW"), seed=3), x[:, None])
    got = run(build_sbcnn(make_card(layout=layout), seed=3), to_layout(x, layout))
    np.testing.assert_allclose(got, reference, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("activation", "apply"), ACTIVATIONS)
def test_build_sbcnn_activation_per_card(activation, apply):
    x = np.random.default_rng(0).standard_normal((4, 1, 64, 44)).astype(np.float32)
    logits = run(build_sbcnn(make_card(activation="logits", apply="softmax"), seed=2), x)
    got = run(build_sbcnn(make_card(activation=activation, apply=apply), seed=2), x)
    if activation == "softmax":
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        expected = e / e.sum(axis=1, keepdims=True)
    elif activation == "sigmoid":
        expected = 1.0 / (1.0 + np.exp(-logits))
    else:
        expected = logits
    assert got.shape == (4, 3)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_build_sbcnn_same_seed_same_bytes_other_seed_differs():
    card = make_card()
    a = build_sbcnn(card, seed=7).SerializeToString()
    b = build_sbcnn(card, seed=7).SerializeToString()
    c = build_sbcnn(card, seed=8).SerializeToString()
    assert a == b
    assert a != c


def test_build_sbcnn_weights_are_he_initialised():
    model = build_sbcnn(make_card(), seed=0)
    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for name, fan_in in [("conv2.weight", 24 * 25), ("conv3.weight", 48 * 25), ("fc1.weight", 48 * 4 * 11)]:
        assert weights[name].std() == pytest.approx(math.sqrt(2.0 / fan_in), rel=0.05)
    assert not weights["conv1.bias"].any()


def test_build_sbcnn_names_from_card():
    model = build_sbcnn(make_card(input_name="features", output_name="scores"))
    assert [i.name for i in model.graph.input] == ["features"]
    assert [o.name for o in model.graph.output] == ["scores"]


def test_build_sbcnn_embeds_card():
    card = make_card(name="x", version="9.9")
    meta = {p.key: p.value for p in build_sbcnn(card).metadata_props}
    assert parse_card(meta[CARD_KEY]) == card


def test_build_sbcnn_waveform_card_raises():
    with pytest.raises(ModelCardError, match="features.kind"):
        build_sbcnn(make_card(layout="NT"))


def test_build_sbcnn_window_too_small_raises():
    with pytest.raises(ModelCardError, match="n_mels=8"):
        build_sbcnn(make_card(n_mels=8, frames=44))


# --- embed_card ----------------------------------------------------------------


def test_embed_card_replaces_earlier_card_and_keeps_other_metadata():
    model = build_sbcnn(make_card(name="first"))
    model.metadata_props.add(key="author", value="me")
    second = make_card(name="second")
    out = embed_card(model, second)
    keys = [p.key for p in out.metadata_props]
    assert keys.count(CARD_KEY) == 1
    assert "author" in keys
    assert dict((p.key, p.value) for p in out.metadata_props)[CARD_KEY] == card_to_json(second)
    # the input proto is untouched
    assert parse_card(dict((p.key, p.value) for p in model.metadata_props)[CARD_KEY]).name == "first"


# --- build_band_energy_model -------------------------------------------------------


@pytest.mark.parametrize("layout", LOGMEL_LAYOUTS)
@pytest.mark.parametrize(("activation", "apply"), ACTIVATIONS)
def test_build_band_energy_model_low_band_pattern_is_low_class(layout, activation, apply):
    card = make_card(layout=layout, activation=activation, apply=apply)
    model = build_band_energy_model(card, bands={"low": (0, 16), "mid": (16, 40), "high": (40, 64)})
    x = low_band_windows(3, band=slice(2, 10))
    y = run(model, to_layout(x, layout))
    assert y.shape == (3, 3)
    assert (y.argmax(axis=1) == card.classes.index("low")).all()
    if activation == "softmax":
        assert y[:, 0].min() > 0.99


@pytest.mark.parametrize("layout", LOGMEL_LAYOUTS)
def test_build_band_energy_model_logmel_equals_band_means(layout):
    card = make_card(layout=layout, activation="logits")
    bands = {"low": (0, 10), "high": (30, 64)}
    x = np.random.default_rng(2).standard_normal((4, 64, 44)).astype(np.float32)
    y = run(build_band_energy_model(card, bands=bands, gain=3.0), to_layout(x, layout))
    means = x.mean(axis=2)
    expected = np.stack([3.0 * means[:, 0:10].mean(1), np.zeros(4), 3.0 * means[:, 30:64].mean(1)], axis=1)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("layout", WAVEFORM_LAYOUTS)
@pytest.mark.parametrize(("activation", "apply"), ACTIVATIONS)
def test_build_band_energy_model_waveform_tone_is_its_band_class(layout, activation, apply):
    card = make_card(layout=layout, activation=activation, apply=apply, sample_rate=16000, samples=4000)
    bands = {"low": (0, 500), "mid": (500, 2000), "high": (2000, 8000)}
    model = build_band_energy_model(card, bands=bands)
    x = tones([200.0, 1000.0, 5000.0], sample_rate=16000, samples=4000)
    y = run(model, to_layout(x, layout))
    assert y.argmax(axis=1).tolist() == [0, 1, 2]


def test_build_band_energy_model_waveform_silence_gives_zero_logits():
    card = make_card(layout="NT", activation="logits", sample_rate=8000, samples=800)
    model = build_band_energy_model(card, bands={"low": (0, 1000), "high": (1000, 4000)})
    y = run(model, np.zeros((2, 800), np.float32))
    np.testing.assert_array_equal(y, np.zeros((2, 3), np.float32))


@pytest.mark.parametrize(
    ("layout", "bands", "match"),
    [
        ("NCHW", {"bass": (0, 8)}, "'bass'"),
        ("NCHW", {"low": (8, 8)}, r"\(8, 8\)"),
        ("NCHW", {"low": (0, 65)}, r"\(0, 65\)"),
        ("NT", {"low": (9000, 9500)}, r"\(9000, 9500\)"),
    ],
)
def test_build_band_energy_model_bad_bands_raise(layout, bands, match):
    with pytest.raises(ConfigError, match=match):
        build_band_energy_model(make_card(layout=layout), bands=bands)

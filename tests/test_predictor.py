"""Tests of soundbatch.predictor.OnnxClassifier on real onnxruntime sessions."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from soundbatch.card import ModelCard
from soundbatch.errors import ConfigError
from soundbatch.model import LoadedModel, load_model
from soundbatch.onnx_build import build_band_energy_model, build_sbcnn, make_card
from soundbatch.predictor import OnnxClassifier

LAYOUTS = ["NCHW", "NHWC", "NHW", "NT", "NCT"]
ACTIVATIONS = [("softmax", None), ("sigmoid", None), ("logits", "softmax"), ("logits", "sigmoid")]
HAS_CUDA = "CUDAExecutionProvider" in ort.get_available_providers()
SR, SAMPLES = 8000, 800  # waveform test windows: 0.1 s at 8 kHz, bins every 10 Hz


def waveform(layout: str) -> bool:
    return layout in ("NT", "NCT")


def bands_for(layout: str) -> dict[str, tuple[int, int]]:
    if waveform(layout):
        return {"low": (0, 500), "mid": (500, 1500), "high": (1500, 4000)}
    return {"low": (0, 16), "mid": (16, 40), "high": (40, 64)}


def card_for(layout: str, activation: str = "softmax", apply: str | None = None, **kw) -> ModelCard:
    return make_card(layout=layout, activation=activation, apply=apply, sample_rate=SR if waveform(layout) else None,
                     samples=SAMPLES, **kw)


def save_and_load(tmp_path: Path, model) -> LoadedModel:
    path = tmp_path / "model.onnx"
    path.write_bytes(model.SerializeToString())
    return load_model(str(path))


def features(layout: str, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (n, SAMPLES) if waveform(layout) else (n, 64, 44)
    return rng.standard_normal(shape).astype(np.float32)


def band_energy_reference(x: np.ndarray, card: ModelCard, bands, gain: float) -> np.ndarray:
    """What the band-energy model computes, in float64 numpy, activation included."""
    x = x.astype(np.float64)
    logits = np.zeros((x.shape[0], len(card.classes)))
    if waveform(card.input.layout):
        power = np.abs(np.fft.rfft(x, axis=1)) ** 2
        freqs = np.fft.rfftfreq(x.shape[1], 1.0 / card.sample_rate)
        for name, (lo, hi) in bands.items():
            inside = (freqs >= lo) & (freqs < hi)
            logits[:, card.classes.index(name)] = gain * power[:, inside].sum(1) / power.sum(1)
    else:
        means = x.mean(axis=2)
        for name, (lo, hi) in bands.items():
            logits[:, card.classes.index(name)] = gain * means[:, lo:hi].mean(1)
    kind = card.output.kind
    if kind == "softmax":
        e = np.exp(logits - logits.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)
    return 1.0 / (1.0 + np.exp(-logits))


# --- predict --------------------------------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize(("activation", "apply"), ACTIVATIONS)
def test_predict_equals_numpy_reference(tmp_path, layout, activation, apply):
    card = card_for(layout, activation, apply)
    bands = bands_for(layout)
    loaded = save_and_load(tmp_path, build_band_energy_model(card, bands=bands, gain=3.0))
    x = features(layout, 37)
    got = OnnxClassifier(loaded, max_batch=16).predict(x)
    assert got.dtype == np.float32
    assert got.shape == (37, 3)
    assert got.flags.c_contiguous
    np.testing.assert_allclose(got, band_energy_reference(x, card, bands, 3.0), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC", "NHW"])
@pytest.mark.parametrize(("activation", "apply"), ACTIVATIONS)
def test_predict_low_band_pattern_is_low_class(tmp_path, layout, activation, apply):
    card = card_for(layout, activation, apply)
    loaded = save_and_load(tmp_path, build_band_energy_model(card, bands=bands_for(layout)))
    x = np.random.default_rng(3).standard_normal((4, 64, 44))
    x[:, 2:10] += 6.0  # a steady low tone, then standardised per window as features.py does
    x = ((x - x.mean(axis=(1, 2), keepdims=True)) / x.std(axis=(1, 2), keepdims=True)).astype(np.float32)
    probs = OnnxClassifier(loaded).predict(x)
    assert probs.argmax(axis=1).tolist() == [card.classes.index("low")] * 4
    assert probs[:, 0].min() > 0.9


@pytest.mark.parametrize("layout", ["NT", "NCT"])
def test_predict_waveform_tones_are_their_band_classes(tmp_path, layout):
    card = card_for(layout)
    loaded = save_and_load(tmp_path, build_band_energy_model(card, bands=bands_for(layout)))
    t = np.arange(SAMPLES) / SR
    x = np.stack([0.3 * np.sin(2 * np.pi * f * t) for f in (100.0, 1000.0, 3000.0)])
    assert OnnxClassifier(loaded).predict(x).argmax(axis=1).tolist() == [0, 1, 2]


@pytest.mark.parametrize("layout", ["NCHW", "NHWC", "NHW"])
def test_predict_sbcnn_same_weights_same_probs_in_every_layout(tmp_path, layout):
    x = features("NCHW", 6, seed=4)
    (tmp_path / "ref").mkdir()
    reference = OnnxClassifier(save_and_load(tmp_path / "ref", build_sbcnn(card_for("NCHW"), seed=9))).predict(x)
    got = OnnxClassifier(save_and_load(tmp_path, build_sbcnn(card_for(layout), seed=9))).predict(x)
    np.testing.assert_allclose(got, reference, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("max_batch", [1, 7, 256])
def test_predict_chunking_does_not_change_results(tmp_path, max_batch):
    loaded = save_and_load(tmp_path, build_sbcnn(card_for("NCHW"), seed=1))
    x = features("NCHW", 20, seed=5)
    whole = OnnxClassifier(loaded, max_batch=256).predict(x)
    np.testing.assert_allclose(OnnxClassifier(loaded, max_batch=max_batch).predict(x), whole, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("layout", ["NCHW", "NT"])
def test_predict_empty_returns_zero_rows_without_running(tmp_path, layout):
    loaded = save_and_load(tmp_path, build_band_energy_model(card_for(layout), bands=bands_for(layout)))
    classifier = OnnxClassifier(loaded)

    class NoRun:
        def run(self, *args, **kwargs):
            raise AssertionError("session.run called for 0 windows")

    classifier._session = NoRun()
    out = classifier.predict(features(layout, 0))
    assert out.shape == (0, 3)
    assert out.dtype == np.float32


@pytest.mark.parametrize("apply", ["softmax", "sigmoid"])
def test_predict_logits_activation_is_stable_for_huge_logits(tmp_path, apply):
    card = card_for("NHW", "logits", apply)
    loaded = save_and_load(tmp_path, build_band_energy_model(card, bands=bands_for("NHW"), gain=1e4))
    x = features("NHW", 5)
    x[:, :16] += 5.0
    x = (x - x.mean(axis=(1, 2), keepdims=True)) / x.std(axis=(1, 2), keepdims=True)  # high bands < 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warnings
        probs = OnnxClassifier(loaded).predict(x)
    assert np.isfinite(probs).all()
    assert probs[:, 0] == pytest.approx(1.0)
    if apply == "softmax":
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    else:
        assert probs[:, 2].max() < 1e-6


def test_predict_casts_float64_input(tmp_path):
    loaded = save_and_load(tmp_path, build_sbcnn(card_for("NCHW")))
    x = features("NCHW", 3)
    classifier = OnnxClassifier(loaded)
    np.testing.assert_array_equal(classifier.predict(x.astype(np.float64)), classifier.predict(x))


@pytest.mark.parametrize(
    ("layout", "shape"), [("NCHW", (2, 64, 43)), ("NCHW", (2, 1, 64, 44)), ("NT", (2, SAMPLES + 1)), ("NT", (SAMPLES,))]
)
def test_predict_wrong_window_shape_raises(tmp_path, layout, shape):
    loaded = save_and_load(tmp_path, build_band_energy_model(card_for(layout), bands=bands_for(layout)))
    with pytest.raises(ConfigError, match=r"predict got windows of shape"):
        OnnxClassifier(loaded).predict(np.zeros(shape, np.float32))


def test_predict_bundled_model_gives_probabilities():
    probs = OnnxClassifier(load_model(None)).predict(features("NCHW", 4))
    assert probs.shape == (4, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


# --- construction ------------------------------------------------------------------------


@pytest.mark.skipif(HAS_CUDA, reason="this onnxruntime has the CUDA provider; the refusal cannot happen")
def test_onnx_classifier_cuda_unavailable_raises_config_error():
    with pytest.raises(ConfigError, match=r"device='cuda' needs onnxruntime's CUDAExecutionProvider"):
        OnnxClassifier(load_model(None), device="cuda")


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs onnxruntime-gpu with CUDAExecutionProvider and an NVIDIA GPU")
def test_onnx_classifier_cuda_matches_cpu():
    loaded = load_model(None)
    x = features("NCHW", 300)
    gpu = OnnxClassifier(loaded, device="cuda")
    assert gpu.providers[0] == "CUDAExecutionProvider"
    np.testing.assert_allclose(gpu.predict(x), OnnxClassifier(loaded).predict(x), rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"device": "tpu"}, "device='tpu'"),
        ({"intra_op_threads": 0}, "intra_op_threads=0"),
        ({"max_batch": 0}, "max_batch=0"),
    ],
)
def test_onnx_classifier_bad_settings_raise(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        OnnxClassifier(load_model(None), **kwargs)


def test_onnx_classifier_uses_cpu_provider():
    assert OnnxClassifier(load_model(None)).providers == ["CPUExecutionProvider"]

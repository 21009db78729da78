"""Tests for soundbatch.gates: the RMS gate and the out-of-domain gate."""

from __future__ import annotations

import numpy as np
import pytest

from soundbatch.gates import SILENCE, UNKNOWN, WindowLabels, apply_gates

CLASSES = ["dog", "siren", "horn"]
SIL = len(CLASSES)  # index of "silence" in the vocabulary
UNK = len(CLASSES) + 1  # index of "unknown"
LOUD = -20.0
QUIET = -80.0
GATE = -60.0


def _softmax(probs, rms=None, *, thresholds=0.5, classes=CLASSES):
    probs = np.asarray(probs)
    if rms is None:
        rms = np.full(len(probs), LOUD)
    if np.isscalar(thresholds):
        thresholds = [thresholds] * len(classes)
    return apply_gates(
        probs, np.asarray(rms), classes=classes, kind="softmax", rms_gate_dbfs=GATE, thresholds=thresholds
    )


def _sigmoid(probs, rms=None, *, thresholds=0.5, classes=CLASSES):
    probs = np.asarray(probs)
    if rms is None:
        rms = np.full(len(probs), LOUD)
    if np.isscalar(thresholds):
        thresholds = [thresholds] * len(classes)
    return apply_gates(
        probs, np.asarray(rms), classes=classes, kind="sigmoid", rms_gate_dbfs=GATE, thresholds=thresholds
    )


# --- softmax ---------------------------------------------------------------


def test_apply_gates_vocabulary_is_classes_then_silence_unknown():
    out = _softmax([[0.9, 0.05, 0.05]])
    assert out.vocabulary == [*CLASSES, SILENCE, UNKNOWN]
    assert out.vocabulary[SIL] == "silence" and out.vocabulary[UNK] == "unknown"


@pytest.mark.parametrize("rms", [-60.001, -80.0, -120.0, -np.inf])
def test_apply_gates_softmax_quiet_is_silence_even_when_confident(rms):
    out = _softmax([[0.99, 0.005, 0.005]], [rms])
    assert out.label.tolist() == [SIL]
    assert out.names.tolist() == ["silence"]
    assert np.isnan(out.confidence[0])
    assert out.on[0].tolist() == [False, False, False, True, False]


def test_apply_gates_softmax_level_at_gate_is_not_silence():
    # "below rms_gate_dbfs" -> silence; exactly at the gate is heard.
    out = _softmax([[0.9, 0.05, 0.05]], [GATE])
    assert out.label.tolist() == [0]


@pytest.mark.parametrize("top", [0.34, 0.4, 0.49])
def test_apply_gates_softmax_below_threshold_is_unknown_with_top_prob(top):
    rest = (1.0 - top) / 2
    probs = np.array([[rest, top, rest]], dtype=np.float32)
    out = _softmax(probs, thresholds=0.5)
    assert out.label.tolist() == [UNK]
    assert out.names.tolist() == ["unknown"]
    assert out.confidence[0] == pytest.approx(top, rel=1e-6)
    assert out.on[0].tolist() == [False, False, False, False, True]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("threshold", [0.5, 0.6, 0.7, 0.8, 0.9])
def test_apply_gates_softmax_top_prob_at_threshold_is_the_class(dtype, threshold):
    # "top probability below ood_threshold -> unknown": exactly at the threshold is known,
    # whatever float type the probabilities come in.
    rest = (1.0 - threshold) / 2
    probs = np.array([[rest, rest, threshold]], dtype=dtype)
    probs[0, 2] = dtype(threshold)
    out = _softmax(probs, thresholds=threshold)
    assert out.label.tolist() == [2], f"p={probs[0, 2]!r} at threshold {threshold} gave {out.names[0]}"


def test_apply_gates_softmax_above_threshold_is_the_class():
    probs = np.array([[0.1, 0.8, 0.1], [0.6, 0.3, 0.1], [0.2, 0.2, 0.6]])
    out = _softmax(probs, thresholds=0.5)
    assert out.label.tolist() == [1, 0, 2]
    assert out.names.tolist() == ["siren", "dog", "horn"]
    np.testing.assert_allclose(out.confidence, [0.8, 0.6, 0.6], rtol=1e-6)
    assert out.on.sum(axis=1).tolist() == [1, 1, 1]


def test_apply_gates_softmax_per_class_thresholds_use_the_top_class():
    # dog needs 0.9, siren 0.3, horn 0.6
    thresholds = [0.9, 0.3, 0.6]
    probs = np.array(
        [
            [0.8, 0.1, 0.1],  # dog 0.8 < 0.9 -> unknown
            [0.05, 0.35, 0.3],  # siren... top is siren 0.35 >= 0.3 -> siren
            [0.95, 0.03, 0.02],  # dog 0.95 >= 0.9 -> dog
            [0.2, 0.25, 0.55],  # horn 0.55 < 0.6 -> unknown
            [0.1, 0.2, 0.7],  # horn 0.7 -> horn
        ]
    )
    out = _softmax(probs, thresholds=thresholds)
    assert out.label.tolist() == [UNK, 1, 0, UNK, 2]
    np.testing.assert_allclose(out.confidence, [0.8, 0.35, 0.95, 0.55, 0.7], rtol=1e-6)


def test_apply_gates_softmax_exactly_one_label_per_window_random():
    rng = np.random.default_rng(0)
    n = 500
    logits = rng.normal(size=(n, 3)) * 2
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    rms = rng.uniform(-100, 0, size=n)
    out = _softmax(probs, rms, thresholds=0.6)
    assert (out.on.sum(axis=1) == 1).all()
    assert (out.on[np.arange(n), out.label]).all()
    quiet = rms < GATE
    top = probs.argmax(axis=1)
    top_p = probs.max(axis=1)
    expected = np.where(quiet, SIL, np.where(top_p >= 0.6, top, UNK))
    np.testing.assert_array_equal(out.label, expected)
    np.testing.assert_array_equal(np.isnan(out.confidence), quiet)
    np.testing.assert_allclose(out.confidence[~quiet], top_p[~quiet], rtol=1e-6)


# --- sigmoid ---------------------------------------------------------------


def test_apply_gates_sigmoid_several_classes_on_at_once():
    probs = np.array([[0.9, 0.7, 0.1]])
    out = _sigmoid(probs)
    assert out.on[0].tolist() == [True, True, False, False, False]
    assert out.label.tolist() == [0]
    assert out.confidence[0] == pytest.approx(0.9)


def test_apply_gates_sigmoid_label_is_most_probable_class_on():
    # horn has the highest probability but its own threshold is not reached.
    probs = np.array([[0.6, 0.7, 0.8]])
    out = _sigmoid(probs, thresholds=[0.5, 0.5, 0.95])
    assert out.on[0].tolist() == [True, True, False, False, False]
    assert out.label.tolist() == [1]
    assert out.names.tolist() == ["siren"]
    assert out.confidence[0] == pytest.approx(0.7)


def test_apply_gates_sigmoid_none_on_is_unknown_with_top_prob():
    probs = np.array([[0.2, 0.4, 0.1]])
    out = _sigmoid(probs)
    assert out.on[0].tolist() == [False, False, False, False, True]
    assert out.label.tolist() == [UNK]
    assert out.confidence[0] == pytest.approx(0.4)


def test_apply_gates_sigmoid_quiet_is_silence_and_no_class_on():
    probs = np.array([[0.9, 0.95, 0.99], [0.9, 0.95, 0.99]])
    out = _sigmoid(probs, [QUIET, LOUD])
    assert out.on[0].tolist() == [False, False, False, True, False]
    assert out.label[0] == SIL
    assert np.isnan(out.confidence[0])
    assert out.on[1].tolist() == [True, True, True, False, False]
    assert out.label[1] == 2


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("threshold", [0.1, 0.3, 0.6, 0.8])
def test_apply_gates_sigmoid_prob_at_threshold_is_on(dtype, threshold):
    # "each class is on where its probability is at least its threshold"
    probs = np.array([[threshold, 0.0, 0.0]], dtype=dtype)
    out = _sigmoid(probs, thresholds=threshold)
    assert out.on[0, 0], f"p={probs[0, 0]!r} at threshold {threshold} is off"
    assert out.label.tolist() == [0]


def test_apply_gates_sigmoid_per_class_thresholds():
    probs = np.array([[0.35, 0.35, 0.35]])
    out = _sigmoid(probs, thresholds=[0.3, 0.4, 0.35])
    # at the threshold counts as on
    assert out.on[0, :3].tolist() == [True, False, True]


def test_apply_gates_sigmoid_random_matches_definition():
    rng = np.random.default_rng(1)
    n = 400
    probs = rng.uniform(size=(n, 3))
    rms = rng.uniform(-90, -10, size=n)
    thr = [0.4, 0.6, 0.8]
    out = _sigmoid(probs, rms, thresholds=thr)
    quiet = rms < GATE
    class_on = (probs >= np.array(thr)) & ~quiet[:, None]
    np.testing.assert_array_equal(out.on[:, :3], class_on)
    np.testing.assert_array_equal(out.on[:, SIL], quiet)
    np.testing.assert_array_equal(out.on[:, UNK], ~quiet & ~class_on.any(axis=1))
    # exactly one of: some class on, silence, unknown
    assert ((out.on[:, :3].any(axis=1)).astype(int) + out.on[:, SIL] + out.on[:, UNK] == 1).all()
    best = np.where(class_on, probs, -1).argmax(axis=1)
    expected = np.where(quiet, SIL, np.where(class_on.any(axis=1), best, UNK))
    np.testing.assert_array_equal(out.label, expected)


# --- shapes, dtypes, errors --------------------------------------------------


@pytest.mark.parametrize("kind", ["softmax", "sigmoid"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_apply_gates_output_shapes_and_dtypes(kind, dtype):
    rng = np.random.default_rng(2)
    n = 17
    probs = rng.dirichlet(np.ones(3), size=n).astype(dtype)
    rms = rng.uniform(-90, -10, size=n)
    out = apply_gates(probs, rms, classes=CLASSES, kind=kind, rms_gate_dbfs=GATE, thresholds=[0.5] * 3)
    assert isinstance(out, WindowLabels)
    assert out.on.shape == (n, 5) and out.on.dtype == bool
    assert out.label.shape == (n,) and np.issubdtype(out.label.dtype, np.integer)
    assert out.confidence.shape == (n,) and out.confidence.dtype == np.float32
    assert out.names.shape == (n,)
    assert set(out.names.tolist()) <= set(out.vocabulary)


@pytest.mark.parametrize("kind", ["softmax", "sigmoid"])
def test_apply_gates_zero_windows(kind):
    out = apply_gates(
        np.zeros((0, 3), dtype=np.float32),
        np.zeros(0),
        classes=CLASSES,
        kind=kind,
        rms_gate_dbfs=GATE,
        thresholds=[0.5] * 3,
    )
    assert out.on.shape == (0, 5)
    assert out.label.shape == (0,)
    assert out.confidence.shape == (0,) and out.confidence.dtype == np.float32
    assert out.names.tolist() == []


@pytest.mark.parametrize("kind", ["softmax", "sigmoid"])
@pytest.mark.parametrize("n_cols", [2, 4])
def test_apply_gates_mismatched_columns_raises(kind, n_cols):
    with pytest.raises(ValueError, match=f"{n_cols} columns but there are 3 classes"):
        apply_gates(
            np.full((4, n_cols), 1.0 / n_cols),
            np.full(4, LOUD),
            classes=CLASSES,
            kind=kind,
            rms_gate_dbfs=GATE,
            thresholds=[0.5] * 3,
        )


def test_apply_gates_unknown_kind_raises():
    with pytest.raises(ValueError, match="kind='logits'"):
        apply_gates(
            np.full((2, 3), 1 / 3), np.full(2, LOUD), classes=CLASSES, kind="logits", rms_gate_dbfs=GATE,
            thresholds=[0.5] * 3,
        )

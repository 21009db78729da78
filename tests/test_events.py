"""Tests for soundbatch.events: runs, gap filling, blip removal, event times and confidences."""

from __future__ import annotations

import math

import numpy as np
import pytest

from soundbatch.events import Event, make_events, runs
from soundbatch.gates import SILENCE, UNKNOWN, WindowLabels, apply_gates

CLASSES = ["dog", "siren", "other"]
A, B, BG = 0, 1, 2  # "other" is used as a background class where a test says so
S, U = len(CLASSES), len(CLASSES) + 1
VOCAB = [*CLASSES, SILENCE, UNKNOWN]


def _labels(seq, *, classes=CLASSES):
    """Single-label WindowLabels from a sequence of vocabulary indices."""
    label = np.asarray(seq, dtype=np.int64)
    vocab = [*classes, SILENCE, UNKNOWN]
    on = np.zeros((len(label), len(vocab)), dtype=bool)
    on[np.arange(len(label)), label] = True
    conf = np.full(len(label), 0.5, dtype=np.float32)
    return WindowLabels(vocabulary=vocab, on=on, label=label, confidence=conf)


def _multi(on_classes, *, classes=CLASSES):
    """Multi-label WindowLabels from a boolean (n, C) class matrix (silence/unknown derived)."""
    on_classes = np.asarray(on_classes, dtype=bool)
    n, c = on_classes.shape
    on = np.zeros((n, c + 2), dtype=bool)
    on[:, :c] = on_classes
    on[:, c + 1] = ~on_classes.any(axis=1)
    label = np.where(on_classes.any(axis=1), on_classes.argmax(axis=1), c + 1)
    return WindowLabels(
        vocabulary=[*classes, SILENCE, UNKNOWN], on=on, label=label, confidence=np.zeros(n, dtype=np.float32)
    )


def _probs(n, *, seed=0, c=len(CLASSES)):
    rng = np.random.default_rng(seed)
    return rng.dirichlet(np.ones(c), size=n).astype(np.float32)


def _spans(events):
    return [(e.label, e.first_window, e.end_window) for e in events]


def _single(seq, *, hop_s=1.0, duration_s=None, probs=None, **kw):
    n = len(seq)
    if duration_s is None:
        duration_s = n * hop_s
    if probs is None:
        probs = _probs(n)
    return make_events(_labels(seq), probs, hop_s=hop_s, duration_s=duration_s, single_label=True, **kw)


# --- runs ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], []),
        ([7], [(7, 0, 1)]),
        ([3, 3, 3], [(3, 0, 3)]),
        ([0, 1, 0, 1], [(0, 0, 1), (1, 1, 2), (0, 2, 3), (1, 3, 4)]),
        ([2, 2, 5, 5, 5, 2], [(2, 0, 2), (5, 2, 5), (2, 5, 6)]),
        ([0, 0, 1], [(0, 0, 2), (1, 2, 3)]),
        ([1, 0, 0], [(1, 0, 1), (0, 1, 3)]),
        ([-1, -1, 4], [(-1, 0, 2), (4, 2, 3)]),
    ],
)
def test_runs_cases(values, expected):
    assert runs(np.asarray(values, dtype=np.int64)) == expected


@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64])
def test_runs_int_dtypes_give_python_ints(dtype):
    out = runs(np.array([1, 1, 0, 1], dtype=dtype))
    assert out == [(1, 0, 2), (0, 2, 3), (1, 3, 4)]
    assert all(type(x) is int for run in out for x in run)


def test_runs_random_reconstructs_input():
    rng = np.random.default_rng(3)
    for _ in range(200):
        values = rng.integers(0, 4, size=rng.integers(0, 40))
        out = runs(values)
        rebuilt = np.concatenate([np.full(b - a, v) for v, a, b in out]) if out else np.zeros(0)
        np.testing.assert_array_equal(rebuilt, values)
        # runs are maximal: neighbours differ, and they tile [0, n)
        assert all(out[i][0] != out[i + 1][0] for i in range(len(out) - 1))
        assert all(out[i][2] == out[i + 1][1] for i in range(len(out) - 1))
        if out:
            assert out[0][1] == 0 and out[-1][2] == len(values)


# --- single label: basic ----------------------------------------------------


def test_make_events_empty_input_is_empty():
    for single in (True, False):
        labels = _labels([])
        out = make_events(
            labels, np.zeros((0, 3), dtype=np.float32), hop_s=0.5, duration_s=0.0, single_label=single,
            min_event_s=1.0, max_gap_s=1.0,
        )
        assert out == []


def test_make_events_single_times_on_hop_grid_and_last_is_duration():
    seq = [A, A, S, S, S, B, U, U]
    hop = 0.5
    duration = 4.37  # the last window owns the time up to the end of the recording
    out = _single(seq, hop_s=hop, duration_s=duration)
    assert _spans(out) == [("dog", 0, 2), ("silence", 2, 5), ("siren", 5, 6), ("unknown", 6, 8)]
    assert [e.onset_s for e in out] == [0.0, 1.0, 2.5, 3.0]
    assert [e.offset_s for e in out] == [1.0, 2.5, 3.0, duration]
    assert [e.n_windows for e in out] == [2, 3, 1, 2]
    assert all(isinstance(e, Event) for e in out)


def test_make_events_single_confidences():
    seq = [A, A, A, S, S, U, U, B]
    probs = _probs(len(seq), seed=5)
    out = _single(seq, probs=probs)
    dog, sil, unk, siren = out
    assert dog.label == "dog"
    assert dog.confidence == pytest.approx(float(probs[0:3, A].max()))
    assert dog.mean_confidence == pytest.approx(float(probs[0:3, A].mean()))
    assert sil.label == "silence"
    assert math.isnan(sil.confidence) and math.isnan(sil.mean_confidence)
    assert unk.label == "unknown"
    assert unk.confidence == pytest.approx(float(probs[5:7].max(axis=1).max()))
    assert unk.mean_confidence == pytest.approx(float(probs[5:7].max(axis=1).mean()))
    assert siren.confidence == pytest.approx(float(probs[7, B]))
    assert siren.mean_confidence == pytest.approx(float(probs[7, B]))


def test_make_events_from_apply_gates_end_to_end():
    probs = np.array(
        [[0.9, 0.05, 0.05], [0.8, 0.1, 0.1], [0.9, 0.05, 0.05], [0.4, 0.3, 0.3], [0.1, 0.85, 0.05]],
        dtype=np.float32,
    )
    rms = np.array([-20, -20, -90, -20, -20], dtype=np.float32)
    labels = apply_gates(probs, rms, classes=CLASSES, kind="softmax", rms_gate_dbfs=-60.0, thresholds=[0.5] * 3)
    out = make_events(labels, probs, hop_s=0.25, duration_s=1.3, single_label=True)
    assert [(e.label, e.onset_s, e.offset_s) for e in out] == [
        ("dog", 0.0, 0.5),
        ("silence", 0.5, 0.75),
        ("unknown", 0.75, 1.0),
        ("siren", 1.0, 1.3),
    ]
    assert out[0].confidence == pytest.approx(0.9)
    assert out[0].mean_confidence == pytest.approx(0.85)
    assert out[2].confidence == pytest.approx(0.4)


# --- single label: gap filling -------------------------------------------------


@pytest.mark.parametrize("gap", [S, U])
def test_make_events_max_gap_fills_silence_or_unknown_between_same_class(gap):
    seq = [A, A, gap, A, A]
    probs = _probs(len(seq), seed=7)
    out = _single(seq, probs=probs, max_gap_s=1.0)
    assert _spans(out) == [("dog", 0, 5)]
    # the filled event's confidence is over all its windows, gap included
    assert out[0].confidence == pytest.approx(float(probs[:, A].max()))
    assert out[0].mean_confidence == pytest.approx(float(probs[:, A].mean()))
    assert out[0].offset_s == 5.0


def test_make_events_max_gap_fills_chains_of_gaps():
    seq = [A, S, A, U, A, A, S, S, A]
    out = _single(seq, max_gap_s=1.0)
    assert _spans(out) == [("dog", 0, 6), ("silence", 6, 8), ("dog", 8, 9)]


def test_make_events_max_gap_fills_gap_mixing_silence_and_unknown():
    # A 2-window gap of silence then unknown is a gap of "silence, unknown or background"
    # no longer than max_gap_s: it is filled like a 2-window gap of one of them.
    seq = [A, A, S, U, A, A]
    out = _single(seq, max_gap_s=2.0)
    assert _spans(out) == [("dog", 0, 6)]


@pytest.mark.parametrize("gap_len", [2, 3])
def test_make_events_max_gap_does_not_fill_longer_gap(gap_len):
    seq = [A, A] + [S] * gap_len + [A, A]
    out = _single(seq, max_gap_s=1.5)  # hop 1 s: at most 1 window
    assert _spans(out) == [("dog", 0, 2), ("silence", 2, 2 + gap_len), ("dog", 2 + gap_len, 4 + gap_len)]


def test_make_events_max_gap_does_not_fill_gap_of_another_class():
    seq = [A, A, B, A, A]
    out = _single(seq, max_gap_s=1.0)
    assert _spans(out) == [("dog", 0, 2), ("siren", 2, 3), ("dog", 3, 5)]


def test_make_events_max_gap_does_not_join_different_classes():
    seq = [A, A, S, B, B]
    out = _single(seq, max_gap_s=1.0)
    assert _spans(out) == [("dog", 0, 2), ("silence", 2, 3), ("siren", 3, 5)]


def test_make_events_max_gap_fills_background_gap():
    seq = [A, A, BG, A]
    out = _single(seq, max_gap_s=1.0, background=frozenset({"other"}))
    assert _spans(out) == [("dog", 0, 4)]


@pytest.mark.parametrize(("hop_s", "max_gap_s", "filled"), [(0.1, 0.3, True), (0.1, 0.29, False), (0.5, 1.5, True)])
def test_make_events_max_gap_boundary_in_seconds(hop_s, max_gap_s, filled):
    seq = [A, S, S, S, A]  # a 3-window gap
    out = _single(seq, hop_s=hop_s, max_gap_s=max_gap_s)
    assert (_spans(out) == [("dog", 0, 5)]) is filled


# --- single label: minimum event length ----------------------------------------


def test_make_events_min_event_blip_absorbed_by_class_neighbours():
    seq = [A, A, A, B, A, A, A]
    out = _single(seq, min_event_s=2.0)
    assert _spans(out) == [("dog", 0, 7)]


def test_make_events_min_event_blip_joins_longer_neighbour():
    seq = [A, A, A, A, B, S, S]
    out = _single(seq, min_event_s=2.0)
    assert _spans(out) == [("dog", 0, 5), ("silence", 5, 7)]
    seq = [A, A, B, S, S, S]
    out = _single(seq, min_event_s=2.0)
    assert _spans(out) == [("dog", 0, 2), ("silence", 2, 6)]


@pytest.mark.parametrize("gap", [S, U])
def test_make_events_min_event_keeps_short_silence_and_unknown(gap):
    seq = [A, A, A, gap, A, A, A]
    out = _single(seq, min_event_s=2.0)
    assert _spans(out) == [("dog", 0, 3), (VOCAB[gap], 3, 4), ("dog", 4, 7)]


def test_make_events_min_event_keeps_events_at_the_minimum():
    seq = [A, A, B, B, A, A]
    out = _single(seq, hop_s=0.5, min_event_s=1.0)
    assert _spans(out) == [("dog", 0, 2), ("siren", 2, 4), ("dog", 4, 6)]


def test_make_events_min_event_zero_keeps_everything():
    seq = [A, B, A, S, U, B]
    out = _single(seq, min_event_s=0.0, max_gap_s=0.0)
    assert _spans(out) == [(VOCAB[v], a, b) for v, a, b in runs(np.asarray(seq))]


def test_make_events_min_event_single_short_recording_is_kept():
    out = _single([B], hop_s=0.5, duration_s=0.7, min_event_s=5.0)
    assert _spans(out) == [("siren", 0, 1)]
    assert out[0].offset_s == 0.7


# --- single label: background ------------------------------------------------


def test_make_events_background_never_reported_single():
    seq = [BG, BG, A, A, BG, S, BG]
    out = _single(seq, background=frozenset({"other"}))
    assert _spans(out) == [("dog", 2, 4), ("silence", 5, 6)]
    assert all(e.label != "other" for e in out)


def test_make_events_background_never_reported_multi():
    on = np.zeros((6, 3), dtype=bool)
    on[:, BG] = True
    on[1:3, A] = True
    out = make_events(
        _multi(on), _probs(6), hop_s=1.0, duration_s=6.0, single_label=False, background=frozenset({"other"})
    )
    assert _spans(out) == [("dog", 1, 3)]


# --- single label: properties over random sequences -------------------------------


def test_make_events_single_label_properties_random():
    rng = np.random.default_rng(20261123)
    for trial in range(400):
        n = int(rng.integers(1, 60))
        # skewed label distribution so runs of varying length occur
        weights = rng.dirichlet(np.ones(len(VOCAB)) * 0.7)
        seq = rng.choice(len(VOCAB), size=n, p=weights)
        hop = float(rng.choice([0.1, 0.25, 0.5, 0.96, 1.0]))
        duration = n * hop + float(rng.uniform(0, 2 * hop))
        min_event_s = float(rng.choice([0.0, rng.uniform(0, 5 * hop)]))
        max_gap_s = float(rng.choice([0.0, rng.uniform(0, 4 * hop)]))
        probs = _probs(n, seed=trial)
        out = make_events(
            _labels(seq), probs, hop_s=hop, duration_s=duration, single_label=True,
            min_event_s=min_event_s, max_gap_s=max_gap_s,
        )
        ctx = f"trial {trial}: seq={seq.tolist()} hop={hop} min={min_event_s} gap={max_gap_s}"
        assert out, ctx
        # tiling of [0, duration]
        assert out[0].onset_s == 0.0 and out[0].first_window == 0, ctx
        assert out[-1].offset_s == duration and out[-1].end_window == n, ctx
        for e, f in zip(out[:-1], out[1:]):
            assert e.offset_s == f.onset_s, ctx
            assert e.end_window == f.first_window, ctx
            assert e.label != f.label, ctx  # runs are merged
        assert sum(e.n_windows for e in out) == n, ctx
        for e in out:
            assert e.n_windows >= 1, ctx
            assert e.onset_s == e.first_window * hop, ctx
            if e is not out[-1]:
                assert e.offset_s == e.end_window * hop, ctx
            assert e.label in VOCAB, ctx
        min_w = math.ceil(min_event_s / hop - 1e-9)
        for e in out:
            if e.label in CLASSES and len(out) > 1:
                assert e.n_windows >= min_w, f"{ctx}: blip {e} survived"
        # confidences
        top = probs.max(axis=1)
        for e in out:
            a, b = e.first_window, e.end_window
            if e.label == SILENCE:
                assert math.isnan(e.confidence) and math.isnan(e.mean_confidence), ctx
            elif e.label == UNKNOWN:
                assert e.confidence == pytest.approx(float(top[a:b].max())), ctx
                assert e.mean_confidence == pytest.approx(float(top[a:b].mean())), ctx
            else:
                c = CLASSES.index(e.label)
                assert e.confidence == pytest.approx(float(probs[a:b, c].max())), ctx
                assert e.mean_confidence == pytest.approx(float(probs[a:b, c].mean())), ctx
        # with no smoothing the events are exactly the runs of labels
        if min_event_s == 0.0 and max_gap_s == 0.0:
            assert _spans(out) == [(VOCAB[v], a, b) for v, a, b in runs(seq)], ctx


def test_make_events_single_label_silence_windows_keep_their_label_random():
    # min_event_s alone (no gap filling) never relabels a silence/unknown window: only class
    # blips move (they may join a silence/unknown neighbour, which then grows).
    rng = np.random.default_rng(11)
    for _ in range(200):
        n = int(rng.integers(2, 40))
        seq = rng.choice([A, B, S, U], size=n, p=[0.4, 0.2, 0.2, 0.2])
        out = _single(seq.tolist(), hop_s=0.5, min_event_s=float(rng.uniform(0, 3)))
        window_label = np.empty(n, dtype=object)
        for e in out:
            window_label[e.first_window : e.end_window] = e.label
        for i, v in enumerate(seq):
            if v in (S, U):
                assert window_label[i] == VOCAB[v], (seq.tolist(), _spans(out))


# --- multi-label ---------------------------------------------------------------


def test_make_events_multi_overlapping_events_of_two_classes():
    on = np.zeros((10, 3), dtype=bool)
    on[0:6, A] = True
    on[3:9, B] = True
    probs = _probs(10, seed=9)
    out = make_events(_multi(on), probs, hop_s=0.5, duration_s=5.2, single_label=False)
    assert _spans(out) == [("dog", 0, 6), ("siren", 3, 9), ("unknown", 9, 10)]
    dog, siren, unk = out
    assert (dog.onset_s, dog.offset_s) == (0.0, 3.0)
    assert (siren.onset_s, siren.offset_s) == (1.5, 4.5)
    assert (unk.onset_s, unk.offset_s) == (4.5, 5.2)
    assert dog.offset_s > siren.onset_s  # they overlap
    assert dog.confidence == pytest.approx(float(probs[0:6, A].max()))
    assert siren.mean_confidence == pytest.approx(float(probs[3:9, B].mean()))


def test_make_events_multi_sorted_by_onset():
    on = np.zeros((8, 3), dtype=bool)
    on[4:8, A] = True
    on[0:2, B] = True
    on[0:8, BG] = True
    out = make_events(_multi(on), _probs(8), hop_s=1.0, duration_s=8.0, single_label=False)
    onsets = [e.onset_s for e in out]
    assert onsets == sorted(onsets)
    assert _spans(out) == [("siren", 0, 2), ("other", 0, 8), ("dog", 4, 8)]


def test_make_events_multi_gap_fill_per_track():
    on = np.zeros((9, 3), dtype=bool)
    on[[0, 1, 3, 4], A] = True  # 1-window gap in dog
    on[[5, 8], B] = True  # 2-window gap in siren
    out = make_events(_multi(on), _probs(9), hop_s=1.0, duration_s=9.0, single_label=False, max_gap_s=1.0)
    class_spans = [s for s in _spans(out) if s[0] in CLASSES]
    assert class_spans == [("dog", 0, 5), ("siren", 5, 6), ("siren", 8, 9)]


def test_make_events_multi_gap_fill_ignores_other_tracks():
    # multi-label tracks are independent: a gap in dog while siren is on is still a gap.
    on = np.zeros((5, 3), dtype=bool)
    on[[0, 1, 3, 4], A] = True
    on[2, B] = True
    out = make_events(_multi(on), _probs(5), hop_s=1.0, duration_s=5.0, single_label=False, max_gap_s=1.0)
    assert _spans(out) == [("dog", 0, 5), ("siren", 2, 3)]


def test_make_events_multi_min_event_per_track():
    on = np.zeros((8, 3), dtype=bool)
    on[0:4, A] = True
    on[2, B] = True  # a 1-window siren blip under the dog
    on[6:8, B] = True
    out = make_events(_multi(on), _probs(8), hop_s=0.5, duration_s=4.0, single_label=False, min_event_s=1.0)
    class_spans = [s for s in _spans(out) if s[0] in CLASSES]
    assert class_spans == [("dog", 0, 4), ("siren", 6, 8)]


def test_make_events_multi_from_sigmoid_gates_silence_and_unknown():
    probs = np.array(
        [[0.9, 0.8, 0.0], [0.9, 0.1, 0.0], [0.9, 0.9, 0.0], [0.2, 0.1, 0.0], [0.2, 0.1, 0.0]],
        dtype=np.float32,
    )
    rms = np.array([-20, -20, -20, -20, -90], dtype=np.float32)
    labels = apply_gates(probs, rms, classes=CLASSES, kind="sigmoid", rms_gate_dbfs=-60.0, thresholds=[0.5] * 3)
    out = make_events(labels, probs, hop_s=1.0, duration_s=5.0, single_label=False)
    assert _spans(out) == [("dog", 0, 3), ("siren", 0, 1), ("siren", 2, 3), ("unknown", 3, 4), ("silence", 4, 5)]
    unk = out[3]
    assert unk.confidence == pytest.approx(0.2)
    assert math.isnan(out[4].confidence)
    assert out[4].offset_s == 5.0

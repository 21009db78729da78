"""From labelled windows to events: merge, fill short gaps, drop blips (pure NumPy).

Each window's verdict is placed at the centre of the window: window ``i`` owns
the cell ``[i * hop_s + lead_s, (i + 1) * hop_s + lead_s)`` with
``lead_s = (window_s - hop_s) / 2``; the first window's cell starts at 0 and the
last one's ends with the recording. So consecutive events meet exactly, and for
a single-label model the events of a recording tile ``[0, duration_s]`` with no
gap or overlap (background classes are never reported, so they leave holes).
Onset and offset resolution is one window hop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from soundbatch.gates import SILENCE, UNKNOWN, WindowLabels


@dataclass(frozen=True)
class Event:
    label: str
    first_window: int
    end_window: int  # exclusive
    onset_s: float
    offset_s: float
    confidence: float  # NaN for silence
    mean_confidence: float

    @property
    def n_windows(self) -> int:
        return self.end_window - self.first_window


def runs(values: np.ndarray) -> list[tuple[int, int, int]]:
    """Runs of equal values: ``[(value, start, end_exclusive), ...]``."""
    n = len(values)
    if n == 0:
        return []
    starts = np.flatnonzero(np.diff(values)) + 1
    bounds = np.concatenate(([0], starts, [n]))
    return [(int(values[a]), int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]


def make_events(
    labels: WindowLabels,
    probs: np.ndarray,
    *,
    hop_s: float,
    window_s: float | None = None,
    duration_s: float,
    single_label: bool,
    background: frozenset[str] = frozenset(),
    min_event_s: float = 0.0,
    max_gap_s: float = 0.0,
) -> list[Event]:
    """Events of one recording, ordered by onset (then label).

    Parameters
    ----------
    labels : WindowLabels
        The gates' verdict for the recording's ``n`` windows, in time order.
    probs : ndarray, shape (n, C)
        Class probabilities of the same windows (for confidences).
    hop_s : float
        Seconds between window starts.
    window_s : float, optional
        Window length in seconds (default ``hop_s``); sets where each verdict sits.
    duration_s : float
        Length of the recording; the last event ends there.
    single_label : bool
        Softmax models: one label per window, events tile the recording. Otherwise
        each class (and ``silence``/``unknown``) has its own on/off track.
    background : set of str
        Classes never reported as events (they count as gaps).
    min_event_s, max_gap_s : float
        Events shorter than ``min_event_s`` are dropped (single-label: the blip
        joins its longer neighbour); gaps of at most ``max_gap_s`` of silence,
        unknown or background between two runs of one class are filled.
    """
    n = len(labels.label)
    vocab = labels.vocabulary
    hidden = {vocab.index(c) for c in background}
    gap_like = hidden | {vocab.index(SILENCE), vocab.index(UNKNOWN)}
    gap_w = int(np.floor(max_gap_s / hop_s + 1e-9))
    min_w = int(np.ceil(min_event_s / hop_s - 1e-9))
    if single_label:
        merged = _smooth_single(runs(labels.label), gap_like=gap_like, gap_w=gap_w, min_w=min_w)
        spans = [(lab, a, b) for lab, a, b in merged if lab not in hidden]
    else:
        spans = []
        for col in range(len(vocab)):
            if col in hidden or not labels.on[:, col].any():
                continue
            on_runs = [(a, b) for v, a, b in runs(labels.on[:, col].astype(np.int8)) if v]
            spans.extend((col, a, b) for a, b in _smooth_track(on_runs, gap_w=gap_w, min_w=min_w))
        spans.sort(key=lambda s: (s[1], s[0]))
    lead_s = max(0.0, ((window_s if window_s is not None else hop_s) - hop_s) / 2)
    n_classes = probs.shape[1]
    top_p = probs.max(axis=1) if n else np.zeros(0, dtype=np.float32)
    events = []
    for col, a, b in spans:
        if col < n_classes:
            p = probs[a:b, col]
        elif vocab[col] == UNKNOWN:
            p = top_p[a:b]
        else:
            p = None
        onset = 0.0 if a == 0 else min(a * hop_s + lead_s, duration_s)
        offset = duration_s if b >= n else min(b * hop_s + lead_s, duration_s)
        events.append(
            Event(
                label=vocab[col],
                first_window=a,
                end_window=b,
                onset_s=onset,
                offset_s=max(offset, onset),
                confidence=float(p.max()) if p is not None else float("nan"),
                mean_confidence=float(p.mean()) if p is not None else float("nan"),
            )
        )
    return events


def _smooth_single(
    spans: list[tuple[int, int, int]], *, gap_like: set[int], gap_w: int, min_w: int
) -> list[tuple[int, int, int]]:
    """Fill short gaps between runs of one class, then let blips join a neighbour."""
    if gap_w > 0:
        filled: list[tuple[int, int, int]] = []
        i = 0
        while i < len(spans):
            lab, a, b = spans[i]
            # Swallow every "gap, same class" that follows this class run; a gap may
            # be several runs (silence then unknown), measured as a whole.
            while lab not in gap_like:
                j = i + 1
                while j < len(spans) and spans[j][0] in gap_like:
                    j += 1
                if j == i + 1 or j >= len(spans) or spans[j][0] != lab:
                    break
                if spans[j - 1][2] - spans[i + 1][1] > gap_w:
                    break
                b = spans[j][2]
                i = j
            filled.append((lab, a, b))
            i += 1
        spans = filled
    if min_w > 1:
        spans = list(spans)
        while True:
            blips = [
                i for i, (lab, a, b) in enumerate(spans)
                if lab not in gap_like and b - a < min_w and len(spans) > 1
            ]
            if not blips:
                break
            i = min(blips, key=lambda k: spans[k][2] - spans[k][1])
            lab, a, b = spans[i]
            left = spans[i - 1] if i > 0 else None
            right = spans[i + 1] if i + 1 < len(spans) else None
            take = left if right is None or (left is not None and left[2] - left[1] >= right[2] - right[1]) else right
            spans[i] = (take[0], a, b)
            spans = _merge_equal(spans)
    return spans


def _merge_equal(spans: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    out: list[tuple[int, int, int]] = []
    for lab, a, b in spans:
        if out and out[-1][0] == lab:
            out[-1] = (lab, out[-1][1], b)
        else:
            out.append((lab, a, b))
    return out


def _smooth_track(on_runs: list[tuple[int, int]], *, gap_w: int, min_w: int) -> list[tuple[int, int]]:
    """One on/off track: fill off-gaps of at most ``gap_w`` windows, drop runs under ``min_w``."""
    out: list[tuple[int, int]] = []
    for a, b in on_runs:
        if out and a - out[-1][1] <= gap_w:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return [(a, b) for a, b in out if b - a >= min_w]

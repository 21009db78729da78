"""Per-window gates: the RMS level gate and the out-of-domain gate (pure NumPy).

Labels are encoded as a boolean matrix ``on`` of shape ``(n_windows, n_classes + 2)``
over the vocabulary ``classes + ["silence", "unknown"]``: single-label (softmax)
models have exactly one ``True`` per row; multi-label (sigmoid) models may have
several class columns on, and ``unknown`` when none is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SILENCE = "silence"
UNKNOWN = "unknown"


@dataclass(frozen=True)
class WindowLabels:
    """The gates' verdict for each window.

    Attributes
    ----------
    vocabulary : list[str]
        ``classes + ["silence", "unknown"]``; column names of ``on``.
    on : ndarray of bool, shape (n, len(vocabulary))
    label : ndarray of int, shape (n,)
        Index into ``vocabulary`` of each window's main label (for multi-label
        models, the most probable class that is on).
    confidence : ndarray of float32, shape (n,)
        Probability of ``label``; NaN for ``silence``; the top probability for ``unknown``.
    """

    vocabulary: list[str]
    on: np.ndarray
    label: np.ndarray
    confidence: np.ndarray

    @property
    def names(self) -> np.ndarray:
        return np.asarray(self.vocabulary, dtype=object)[self.label]


def apply_gates(
    probs: np.ndarray,
    rms_dbfs: np.ndarray,
    *,
    classes: list[str],
    kind: str,
    rms_gate_dbfs: float,
    thresholds: list[float],
) -> WindowLabels:
    """Label each window: ``silence`` below the RMS gate, ``unknown`` when out of domain.

    Parameters
    ----------
    probs : ndarray, shape (n, C)
        Class probabilities (softmax rows or independent sigmoids).
    rms_dbfs : ndarray, shape (n,)
        Window level in dBFS.
    kind : {"softmax", "sigmoid"}
    thresholds : list of float, length C
        Softmax: the top probability must reach ``thresholds[top]``. Sigmoid: class
        ``c`` is on where ``probs[:, c] >= thresholds[c]``.
    """
    n, n_classes = probs.shape
    if n_classes != len(classes):
        raise ValueError(f"probs has {n_classes} columns but there are {len(classes)} classes")
    silence_col, unknown_col = n_classes, n_classes + 1
    # Compare in the probabilities' own precision: a float32 0.3 is not a float64 0.3.
    dtype = probs.dtype if np.issubdtype(probs.dtype, np.floating) else np.float64
    thr = np.asarray(thresholds, dtype=dtype)
    quiet = np.asarray(rms_dbfs) < rms_gate_dbfs
    top = probs.argmax(axis=1) if n else np.zeros(0, dtype=np.int64)
    top_p = probs[np.arange(n), top] if n else np.zeros(0, dtype=np.float32)

    on = np.zeros((n, n_classes + 2), dtype=bool)
    if kind == "softmax":
        known = top_p >= thr[top]
        label = np.where(known, top, unknown_col)
    elif kind == "sigmoid":
        class_on = probs >= thr[None, :]
        on[:, :n_classes] = class_on
        # The most probable class among those that are on.
        masked = np.where(class_on, probs, -np.inf)
        best = masked.argmax(axis=1) if n else np.zeros(0, dtype=np.int64)
        known = class_on.any(axis=1)
        label = np.where(known, best, unknown_col)
    else:
        raise ValueError(f"kind={kind!r}: expected 'softmax' or 'sigmoid'")
    label = np.where(quiet, silence_col, label)
    on[:, :n_classes] &= ~quiet[:, None]
    if kind == "softmax":
        on[np.arange(n), label] = True
    else:
        on[:, silence_col] = quiet
        on[:, unknown_col] = ~quiet & ~on[:, :n_classes].any(axis=1)

    confidence = np.where(
        label < n_classes, probs[np.arange(n), np.minimum(label, n_classes - 1)], top_p
    ).astype(np.float32)
    confidence[label == silence_col] = np.nan
    return WindowLabels(vocabulary=[*classes, SILENCE, UNKNOWN], on=on, label=label, confidence=confidence)


"""Window and segment geometry at the model's sample rate.

A recording of ``n`` samples (after resampling to the model rate) is cut into
windows that start every ``hop_samples``. Window ``i`` nominally spans
``[i * hop_samples, i * hop_samples + window_samples)``; that span gives its
times and its RMS level. What the feature extractor reads for it can be wider:
with ``center=True`` the first STFT frame starts ``n_fft // 2`` samples early,
and the last frame runs ``n_fft - hop_length`` samples past the nominal end.
Samples before 0 or past the end of the recording read as zeros.

Pure: no I/O, no NumPy state.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from soundbatch.card import FrameWindow, LogMelFeatures, ModelCard


@dataclass(frozen=True)
class WindowGrid:
    """Geometry of the analysis windows of one model, in samples at the model rate.

    Attributes
    ----------
    sample_rate : int
        Model rate in Hz (``card.features.sample_rate``).
    hop_samples : int
        Samples between the starts of consecutive windows.
    window_samples : int
        Nominal span of one window: ``frames * hop_length`` (logmel) or
        ``samples`` (waveform); ``t_end = t_start + window_samples / sample_rate``.
    read_offset : int
        First sample a window reads, relative to its start:
        ``-(n_fft // 2)`` for ``center=True``, else 0.
    read_samples : int
        Samples a window reads from there:
        ``(frames - 1) * hop_length + n_fft`` (logmel) or ``samples`` (waveform).
    """

    sample_rate: int
    hop_samples: int
    window_samples: int
    read_offset: int
    read_samples: int

    def __post_init__(self) -> None:
        for name in ("sample_rate", "hop_samples", "window_samples", "read_samples"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value <= 0:
                raise ValueError(f"WindowGrid.{name}={value!r} must be a positive integer")
        if self.read_offset > 0:
            raise ValueError(f"WindowGrid.read_offset={self.read_offset} must be <= 0")

    @classmethod
    def from_card(cls, card: ModelCard) -> "WindowGrid":
        """Build the grid a model card describes."""
        feats = card.features
        if isinstance(feats, LogMelFeatures):
            assert isinstance(card.window, FrameWindow)  # the card validator enforces it
            return cls(
                sample_rate=feats.sample_rate,
                hop_samples=card.window.hop_frames * feats.hop_length,
                window_samples=card.window.frames * feats.hop_length,
                read_offset=-(feats.n_fft // 2) if feats.center else 0,
                read_samples=(card.window.frames - 1) * feats.hop_length + feats.n_fft,
            )
        return cls(
            sample_rate=feats.sample_rate,
            hop_samples=card.window.hop_samples,  # type: ignore[union-attr]
            window_samples=card.window.samples,  # type: ignore[union-attr]
            read_offset=0,
            read_samples=card.window.samples,  # type: ignore[union-attr]
        )

    def n_windows(self, n_samples: int) -> int:
        """Number of windows for a recording of ``n_samples`` samples at the model rate.

        0 for an empty recording; otherwise one window at 0 plus as many hops as
        needed for the last window to reach the end (it may run past it, into
        zeros): ``ceil(max(0, n - window_samples) / hop) + 1``.
        """
        if n_samples < 0:
            raise ValueError(f"n_samples={n_samples} must be >= 0")
        if n_samples == 0:
            return 0
        rest = max(0, n_samples - self.window_samples)
        return -(-rest // self.hop_samples) + 1

    def segments(self, n_windows: int, *, windows_per_segment: int) -> list[tuple[int, int]]:
        """Split windows ``[0, n_windows)`` into consecutive ``[w0, w1)`` ranges.

        The ranges tile ``[0, n_windows)`` without gap or overlap; all hold
        ``windows_per_segment`` windows except possibly the last. Empty list for 0.
        """
        if windows_per_segment <= 0:
            raise ValueError(f"windows_per_segment={windows_per_segment} must be a positive integer")
        if n_windows < 0:
            raise ValueError(f"n_windows={n_windows} must be >= 0")
        return [
            (w0, min(w0 + windows_per_segment, n_windows))
            for w0 in range(0, n_windows, windows_per_segment)
        ]

    def window_times(self, w0: int, w1: int) -> tuple[np.ndarray, np.ndarray]:
        """Start and end times in seconds of windows ``[w0, w1)``.

        Returns
        -------
        t_start_s, t_end_s : np.ndarray
            float64, shape ``(w1 - w0,)``; ``t_end_s - t_start_s == window_samples / sample_rate``.
        """
        if not 0 <= w0 <= w1:
            raise ValueError(f"window range [w0={w0}, w1={w1}) must satisfy 0 <= w0 <= w1")
        starts = np.arange(w0, w1, dtype=np.int64) * self.hop_samples
        # Divide integer sample positions once, so times are exact to float64 rounding
        # and do not drift along a long recording.
        t_start = starts / float(self.sample_rate)
        t_end = (starts + self.window_samples) / float(self.sample_rate)
        return t_start, t_end

    def read_span(self, w0: int, w1: int) -> tuple[int, int]:
        """Model-rate sample range ``[a, b)`` that windows ``[w0, w1)`` read.

        ``a`` can be negative and ``b`` can pass the end of the recording: the
        samples there are zeros.
        """
        if not 0 <= w0 < w1:
            raise ValueError(f"window range [w0={w0}, w1={w1}) must satisfy 0 <= w0 < w1")
        a = w0 * self.hop_samples + self.read_offset
        b = (w1 - 1) * self.hop_samples + self.read_offset + self.read_samples
        return a, b

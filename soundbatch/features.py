"""Vectorised features at the model rate: log-mel windows, waveform windows, window RMS.

The log-mel equals ``librosa.feature.melspectrogram`` (``window="hann"``,
``pad_mode="constant"``) followed by the card's log and per-window
standardisation, to 1e-4 relative, without importing librosa:

- the mel filterbank is built the way ``librosa.filters.mel`` builds it
  (slaney or htk scale, ``norm="slaney"`` or None, float32 result);
- the analysis window is a periodic hann of ``win_length`` zero-padded to
  ``n_fft``, centred, as ``librosa.stft`` pads it;
- frames are strided views of the signal; the FFT runs in float64, as librosa's
  does (its window is float64, so its frames are promoted before ``rfft``).
  A float32 FFT's rounding noise (~-140 dB under a frame's peak) would be
  all that is left in high mel bands next to pure tones, where the 1e-4 match
  would go; and numpy's float32 rfft measured slower than float64 here anyway.

A segment's STFT frames are computed once; the overlapping windows are cut
from the frame matrix with strides. Frames go through the FFT in blocks so the
float64 work buffers stay small (a few MiB) and are reused from call to call:
fresh large arrays per file cost twice the time on the target VMs.

Pure: NumPy in, NumPy out; no I/O.
"""

from __future__ import annotations

import threading
from functools import lru_cache

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from soundbatch.card import FrameWindow, LogMelFeatures, ModelCard, SampleWindow, WaveformFeatures
from soundbatch.grid import WindowGrid

#: Floor of :func:`window_rms_dbfs`: digital silence reads -200 dBFS, not -inf.
RMS_FLOOR_DBFS = -200.0

# Standard deviations at or below this (in log units) mark a window as
# constant: its standardised features are zeros. A window of identical values
# has std exactly 0.0; the margin only absorbs float rounding, far below any
# real spectral variation (float32 resolution of a log value near 20 is 2e-6).
_STD_FLOOR = 1e-6

# Frames per FFT block: 256 frames x 1024 bins x 8 bytes = 2 MiB of float64.
_BLOCK_FRAMES = 256


# --------------------------------------------------------------------------
# mel filterbank (librosa.filters.mel, without librosa)


def hz_to_mel(frequencies: np.ndarray | float, *, htk: bool = False) -> np.ndarray:
    """Hz -> mel, slaney (linear below 1 kHz, log above) or HTK formula; float64."""
    f = np.asarray(frequencies, dtype=np.float64)
    if htk:
        return 2595.0 * np.log10(1.0 + f / 700.0)
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    mels = f / f_sp
    log_part = f >= min_log_hz
    return np.where(log_part, min_log_mel + np.log(np.maximum(f, min_log_hz) / min_log_hz) / logstep, mels)


def mel_to_hz(mels: np.ndarray | float, *, htk: bool = False) -> np.ndarray:
    """Mel -> Hz, the inverse of :func:`hz_to_mel`; float64."""
    m = np.asarray(mels, dtype=np.float64)
    if htk:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    freqs = f_sp * m
    log_part = m >= min_log_mel
    return np.where(log_part, min_log_hz * np.exp(logstep * (m - min_log_mel)), freqs)


def mel_filterbank(
    *,
    sample_rate: int,
    n_fft: int,
    n_mels: int,
    fmin: float = 0.0,
    fmax: float | None = None,
    htk: bool = False,
    norm: str | None = "slaney",
) -> np.ndarray:
    """Triangular mel filterbank, equal to ``librosa.filters.mel`` (float32).

    Parameters
    ----------
    sample_rate : int
        Sample rate in Hz.
    n_fft : int
        FFT size; the filterbank has ``1 + n_fft // 2`` columns.
    n_mels : int
        Number of mel bands.
    fmin, fmax : float
        Band limits in Hz; ``fmax=None`` means ``sample_rate / 2``.
    htk : bool
        HTK mel formula instead of Slaney's.
    norm : {"slaney", None}
        ``"slaney"`` divides each triangle by its width in Hz (area normalisation).

    Returns
    -------
    np.ndarray
        float32, shape ``(n_mels, 1 + n_fft // 2)``.
    """
    if norm not in ("slaney", None):
        raise ValueError(f'norm={norm!r} must be "slaney" or None')
    if fmax is None:
        fmax = sample_rate / 2.0
    fftfreqs = np.fft.rfftfreq(n=n_fft, d=1.0 / sample_rate)
    mel_f = mel_to_hz(
        np.linspace(hz_to_mel(fmin, htk=htk), hz_to_mel(fmax, htk=htk), n_mels + 2), htk=htk
    )
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fftfreqs)
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    # librosa stores the triangles in float32 first, then scales them by the
    # float64 slaney factor and rounds again; doing the same keeps us bit-equal.
    weights = np.maximum(0.0, np.minimum(lower, upper)).astype(np.float32)
    if norm == "slaney":
        enorm = 2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels])
        weights = (weights * enorm[:, None]).astype(np.float32)
    return weights


def hann_window(win_length: int, n_fft: int) -> np.ndarray:
    """Periodic hann of ``win_length`` zero-padded (centred) to ``n_fft``; float64 ``(n_fft,)``."""
    if not 0 < win_length <= n_fft:
        raise ValueError(f"win_length={win_length} must be in [1, n_fft={n_fft}]")
    n = np.arange(win_length, dtype=np.float64)
    win = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / win_length)
    out = np.zeros(n_fft, dtype=np.float64)
    lpad = (n_fft - win_length) // 2  # librosa.util.pad_center
    out[lpad : lpad + win_length] = win
    return out


# --------------------------------------------------------------------------
# per-window standardisation and RMS


def standardize_windows(x: np.ndarray) -> np.ndarray:
    """Each window minus its own mean, divided by its own std, in place.

    Parameters
    ----------
    x : np.ndarray
        float32, shape ``(n, ...)``; one window per leading index.

    Returns
    -------
    np.ndarray
        ``x`` itself. Windows with std <= 1e-6 (constant windows) become zeros.
    """
    if x.shape[0] == 0:
        return x
    flat = x.reshape(x.shape[0], -1)
    # float64 statistics: float32 sums over thousands of values would lose
    # digits that the division by a small std then magnifies.
    mean = flat.mean(axis=1, dtype=np.float64)
    flat -= mean[:, None].astype(np.float32)
    std = np.sqrt(np.einsum("ij,ij->i", flat, flat, dtype=np.float64) / flat.shape[1])
    constant = std <= _STD_FLOOR
    scale = np.where(constant, 0.0, 1.0 / np.where(constant, 1.0, std)).astype(np.float32)
    flat *= scale[:, None]
    return x


def window_rms_dbfs(
    y: np.ndarray, n_windows: int, *, hop_samples: int, window_samples: int, lead: int = 0
) -> np.ndarray:
    """RMS level in dBFS of each window's nominal span.

    Window ``i`` covers ``y[lead + i*hop_samples : lead + i*hop_samples + window_samples]``;
    samples past the end of ``y`` count as zeros (the mean is always over
    ``window_samples``).

    Parameters
    ----------
    y : np.ndarray
        Mono audio at the model rate, float32 ``(n,)``, full scale = 1.0.
    n_windows : int
        Number of windows.
    hop_samples, window_samples : int
        Window geometry in samples.
    lead : int
        Index in ``y`` of window 0's start.

    Returns
    -------
    np.ndarray
        float32 ``(n_windows,)``, ``20*log10(rms)``, floored at -200 dBFS.
    """
    if n_windows == 0:
        return np.zeros(0, dtype=np.float32)
    # Sum squares in blocks of gcd(hop, window) samples, then add whole blocks
    # per window: no running cumulative sum, so a silent window after a loud
    # one sums to exactly 0 (no cancellation), whatever the segment split.
    g = int(np.gcd(hop_samples, window_samples))
    span = (n_windows - 1) * hop_samples + window_samples
    seg = y[lead : lead + span]
    n_blocks = span // g
    full = seg.shape[0] // g
    block_sums = np.zeros(n_blocks, dtype=np.float64)
    if full:
        head = seg[: full * g].astype(np.float64).reshape(full, g)
        block_sums[:full] = np.einsum("ij,ij->i", head, head)
    rest = seg[full * g :].astype(np.float64)
    if rest.size:
        block_sums[full] = rest @ rest
    per_window = window_samples // g
    sums = sliding_window_view(block_sums, per_window)[:: hop_samples // g][:n_windows].sum(axis=1)
    rms = np.sqrt(sums / window_samples)
    floor = 10.0 ** (RMS_FLOOR_DBFS / 20.0)
    return (20.0 * np.log10(np.maximum(rms, floor))).astype(np.float32)


# --------------------------------------------------------------------------
# extractors


class LogMelExtractor:
    """Log-mel windows for one card; caches the filterbank, the window and work buffers.

    Build once per card (see :func:`extractor_for`). Thread-safe: work buffers
    are per thread.
    """

    def __init__(self, features: LogMelFeatures, window: FrameWindow) -> None:
        self.features = features
        self.n_fft = features.n_fft
        self.hop_length = features.hop_length
        self.frames_per_window = window.frames
        self.hop_frames = window.hop_frames
        self.n_mels = features.n_mels
        self.n_bins = 1 + features.n_fft // 2
        self.mel_basis = mel_filterbank(
            sample_rate=features.sample_rate,
            n_fft=features.n_fft,
            n_mels=features.n_mels,
            fmin=features.fmin,
            fmax=features.fmax,
            htk=features.htk,
            norm=features.mel_norm,
        )
        # (n_bins, n_mels) contiguous, so power (frames, n_bins) @ it is one GEMM.
        self._mel_t = np.ascontiguousarray(self.mel_basis.T)
        self.fft_window = hann_window(features.effective_win_length, features.n_fft)
        self._local = threading.local()

    # buffers -------------------------------------------------------------

    def _buffers(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        bufs = getattr(self._local, "bufs", None)
        if bufs is None or bufs[0].shape[0] < n:
            size = max(n, _BLOCK_FRAMES)
            bufs = (
                np.empty((size, self.n_fft), dtype=np.float64),  # windowed frames
                np.empty((size, self.n_bins), dtype=np.complex128),  # spectrum
                np.empty((size, self.n_bins), dtype=np.float64),  # power (power != 2)
                np.empty((size, self.n_bins), dtype=np.float32),  # power for the GEMM
            )
            self._local.bufs = bufs
        return bufs

    # core ------------------------------------------------------------------

    def n_frames(self, n_windows: int) -> int:
        """STFT frames that ``n_windows`` consecutive windows cover."""
        if n_windows <= 0:
            return 0
        return (n_windows - 1) * self.hop_frames + self.frames_per_window

    def mel_frames(self, y: np.ndarray, n_frames: int | None = None) -> np.ndarray:
        """Mel power (not logged) of the STFT frames of ``y``.

        Frame ``k`` is ``y[k*hop_length : k*hop_length + n_fft]``; no padding
        is added here (the caller's ``y`` already holds any centring lead).

        Parameters
        ----------
        y : np.ndarray
            Mono audio, float32 ``(n,)``.
        n_frames : int, optional
            Frames to compute; default all that fit in ``y``.

        Returns
        -------
        np.ndarray
            float32 ``(n_frames, n_mels)`` (time-major).
        """
        y = np.ascontiguousarray(y, dtype=np.float32)
        fit = 0 if y.shape[0] < self.n_fft else 1 + (y.shape[0] - self.n_fft) // self.hop_length
        if n_frames is None:
            n_frames = fit
        if n_frames > fit:
            raise ValueError(
                f"{n_frames} frames of n_fft={self.n_fft}, hop_length={self.hop_length} need "
                f"{(n_frames - 1) * self.hop_length + self.n_fft} samples; y has {y.shape[0]}"
            )
        out = np.empty((n_frames, self.n_mels), dtype=np.float32)
        if n_frames == 0:
            return out
        framed = sliding_window_view(y, self.n_fft)[:: self.hop_length]
        block = min(_BLOCK_FRAMES, n_frames)
        frames_buf, spec_buf, pow_buf, pow32_buf = self._buffers(block)
        half_power = self.features.power / 2.0
        for i0 in range(0, n_frames, block):
            i1 = min(i0 + block, n_frames)
            m = i1 - i0
            fr, spec, pw, pw32 = frames_buf[:m], spec_buf[:m], pow_buf[:m], pow32_buf[:m]
            np.multiply(framed[i0:i1], self.fft_window, out=fr)
            np.fft.rfft(fr, axis=-1, out=spec)
            # |X|^2 = re^2 + im^2: square the interleaved float64 view in place,
            # then add the pairs (two passes instead of four strided ones).
            ri = spec.view(np.float64)
            np.multiply(ri, ri, out=ri)
            if half_power == 1.0:
                np.add(ri[:, 0::2], ri[:, 1::2], out=pw32)
            else:
                np.add(ri[:, 0::2], ri[:, 1::2], out=pw)
                if half_power == 0.5:
                    np.sqrt(pw, out=pw)
                else:
                    np.power(pw, half_power, out=pw)
                pw32[...] = pw
            np.matmul(pw32, self._mel_t, out=out[i0:i1])
        return out

    def log_mel_frames(self, y: np.ndarray, n_frames: int | None = None) -> np.ndarray:
        """The card's log of :meth:`mel_frames`: float32 ``(n_frames, n_mels)``."""
        s = self.mel_frames(y, n_frames)
        eps = np.float32(self.features.log_eps)
        if self.features.log == "log":
            np.add(s, eps, out=s)
            np.log(s, out=s)
        else:
            np.maximum(s, eps, out=s)
            np.log10(s, out=s)
            np.multiply(s, np.float32(10.0), out=s)
        return s

    def windows(self, y: np.ndarray, n_windows: int, *, start: int = 0) -> np.ndarray:
        """Log-mel windows, standardised as the card says.

        Parameters
        ----------
        y : np.ndarray
            Mono audio at the model rate, float32 ``(n,)``. The first frame of
            window 0 starts at ``y[start]`` (so ``start`` includes the
            ``n_fft // 2`` lead of ``center=True``); window ``i``'s frames start
            ``i * hop_frames * hop_length`` samples later.
        n_windows : int
            Number of windows to cut.
        start : int
            Index in ``y`` of window 0's first frame.

        Returns
        -------
        np.ndarray
            float32 ``(n_windows, n_mels, frames)``.
        """
        if n_windows == 0:
            return np.zeros((0, self.n_mels, self.frames_per_window), dtype=np.float32)
        s = self.log_mel_frames(y[start:], self.n_frames(n_windows))
        # (T, n_mels) -> strided (n, n_mels, frames) view, one copy into the result.
        view = sliding_window_view(s, self.frames_per_window, axis=0)[:: self.hop_frames]
        out = np.ascontiguousarray(view[:n_windows])
        if self.features.normalize == "window":
            standardize_windows(out)
        return out


class WaveformExtractor:
    """Raw-audio windows ``(n, samples)`` for models that compute their own features."""

    def __init__(self, features: WaveformFeatures, window: SampleWindow) -> None:
        self.features = features
        self.samples = window.samples
        self.hop_samples = window.hop_samples

    def windows(self, y: np.ndarray, n_windows: int, *, start: int = 0) -> np.ndarray:
        """float32 ``(n_windows, samples)``; window ``i`` is ``y[start + i*hop : ... + samples]``."""
        if n_windows == 0:
            return np.zeros((0, self.samples), dtype=np.float32)
        need = start + (n_windows - 1) * self.hop_samples + self.samples
        if y.shape[0] < need:
            raise ValueError(f"{n_windows} windows from start={start} need {need} samples; y has {y.shape[0]}")
        view = sliding_window_view(y[start:need], self.samples)[:: self.hop_samples]
        return np.ascontiguousarray(view[:n_windows], dtype=np.float32)


Extractor = LogMelExtractor | WaveformExtractor


@lru_cache(maxsize=16)
def _extractor(features, window) -> Extractor:  # noqa: ANN001 - frozen card parts, hashable
    if isinstance(features, LogMelFeatures):
        return LogMelExtractor(features, window)
    return WaveformExtractor(features, window)


def extractor_for(card: ModelCard) -> Extractor:
    """The process-wide cached extractor of a card (keyed by its features and window)."""
    return _extractor(card.features, card.window)


def segment_features(
    y: np.ndarray, card: ModelCard, n_windows: int, *, lead: int
) -> tuple[np.ndarray, np.ndarray]:
    """Features and RMS of ``n_windows`` consecutive windows of ``y``.

    Parameters
    ----------
    y : np.ndarray
        Mono audio at the model rate, float32 ``(n,)``, holding everything the
        windows read (zeros already placed where the recording has none).
    card : ModelCard
        The model card.
    n_windows : int
        Number of windows.
    lead : int
        Index in ``y`` of window 0's nominal start; ``lead + read_offset >= 0``.

    Returns
    -------
    features : np.ndarray
        float32 ``(n, n_mels, frames)`` (logmel) or ``(n, samples)`` (waveform).
    rms_dbfs : np.ndarray
        float32 ``(n,)``.
    """
    grid = WindowGrid.from_card(card)
    if lead + grid.read_offset < 0:
        raise ValueError(f"lead={lead} leaves no room for read_offset={grid.read_offset}")
    ext = extractor_for(card)
    feats = ext.windows(y, n_windows, start=lead + grid.read_offset)
    rms = window_rms_dbfs(
        y, n_windows, hop_samples=grid.hop_samples, window_samples=grid.window_samples, lead=lead
    )
    return feats, rms

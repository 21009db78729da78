"""features: log-mel equal to librosa, waveform windows, standardisation, RMS."""

from __future__ import annotations

import librosa
import numpy as np
import pytest

from soundbatch.card import ModelCard
from soundbatch.features import (
    extractor_for,
    mel_filterbank,
    segment_features,
    standardize_windows,
    window_rms_dbfs,
)
from soundbatch.grid import WindowGrid

FRAMES, HOP_FRAMES = 20, 7  # odd hop: windows overlap unevenly


def _card(features: dict, window: dict | None = None, layout: str = "NCHW") -> ModelCard:
    return ModelCard.model_validate(
        {
            "name": "t",
            "version": "1",
            "classes": ["a"],
            "output": {"activation": "softmax"},
            "input": {"layout": layout},
            "features": features,
            "window": window or {"frames": FRAMES, "hop_frames": HOP_FRAMES},
        }
    )


def _noise(sr: int, seconds: float, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(sr * seconds))).astype(np.float32)


def _recorded_like(sr: int, seconds: float, seed: int = 1) -> np.ndarray:
    """A chirp, two tones and pink-ish noise, with digital-silence gaps."""
    rng = np.random.default_rng(seed)
    n = int(sr * seconds)
    t = np.arange(n) / sr
    chirp = 0.3 * np.sin(2 * np.pi * (100 * t + (0.4 * sr / 2 - 100) * t**2 / (2 * seconds)))
    tones = 0.2 * np.sin(2 * np.pi * 440 * t) + 0.05 * np.sin(2 * np.pi * 3150 * t)
    white = rng.standard_normal(n)
    spec = np.fft.rfft(white)
    spec[1:] /= np.sqrt(np.arange(1, spec.size))  # 1/f power: pink-ish
    pink = np.fft.irfft(spec, n)
    pink *= 0.05 / pink.std()
    y = chirp + tones + pink
    y[int(0.25 * n) : int(0.40 * n)] = 0.0  # silence gaps
    y[int(0.70 * n) : int(0.72 * n)] = 0.0
    return y.astype(np.float32)


# (sr, n_fft, win_length, hop, n_mels, fmin, fmax, htk, mel_norm, center, log, power)
PARAMS = [
    (16000, 512, 400, 160, 40, 50.0, 7000.0, True, None, False, "log", 2.0),
    (22050, 1024, None, 512, 64, 0.0, None, False, "slaney", False, "log", 2.0),
    (22050, 1024, 800, 256, 64, 20.0, 10000.0, False, "slaney", True, "db", 1.0),
    (44100, 2048, 1500, 512, 128, 30.0, 16000.0, True, "slaney", True, "log", 2.0),
    (44100, 2048, None, 256, 128, 0.0, None, False, None, False, "db", 2.0),
    (16000, 512, 512, 256, 40, 125.0, 7600.0, False, "slaney", True, "db", 1.0),
]
SIGNALS = {"noise": _noise, "recorded_like": _recorded_like}


def _features(p: tuple) -> dict:
    sr, n_fft, win, hop, n_mels, fmin, fmax, htk, norm, center, log, power = p
    return {
        "kind": "logmel", "sample_rate": sr, "n_fft": n_fft, "win_length": win, "hop_length": hop,
        "n_mels": n_mels, "fmin": fmin, "fmax": fmax, "htk": htk, "mel_norm": norm, "center": center,
        "log": log, "power": power,
    }


def _librosa_reference(y: np.ndarray, p: tuple, n_windows: int) -> tuple[np.ndarray, np.ndarray]:
    """librosa's mel power (n_mels, T) of the whole signal, and the card's log of it."""
    sr, n_fft, win, hop, n_mels, fmin, fmax, htk, norm, center, log, power = p
    # Windows past the end read zeros: pad the end so librosa has those frames too
    # (zeros after its own constant centre padding change nothing).
    need = (n_windows - 1) * HOP_FRAMES * hop + (FRAMES - 1) * hop + n_fft
    y_pad = np.concatenate([y, np.zeros(need, np.float32)])
    s = librosa.feature.melspectrogram(
        y=y_pad, sr=sr, n_fft=n_fft, win_length=win, hop_length=hop, window="hann", center=center,
        pad_mode="constant", power=power, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=htk, norm=norm,
    )
    t = (n_windows - 1) * HOP_FRAMES + FRAMES
    s = s[:, :t].astype(np.float64)
    eps = 1e-9
    logged = np.log(s + eps) if log == "log" else 10 * np.log10(np.maximum(s, eps))
    return s, logged


def _model_rate_signal(y: np.ndarray, grid: WindowGrid, n_windows: int) -> tuple[np.ndarray, int]:
    """y as decode.read_windows hands it over: centring lead and zero tail included; returns (y, lead)."""
    lead = -grid.read_offset
    tail = (n_windows - 1) * grid.hop_samples + grid.read_samples + grid.window_samples
    return np.concatenate([np.zeros(lead, np.float32), y, np.zeros(tail, np.float32)]), lead


@pytest.mark.parametrize(
    ("sr", "n_fft", "n_mels", "fmin", "fmax", "htk", "norm"),
    [
        (16000, 512, 40, 0.0, None, False, "slaney"),
        (22050, 1024, 64, 50.0, 9000.0, True, None),
        (44100, 2048, 128, 20.0, 18000.0, False, None),
        (44100, 2048, 128, 0.0, None, True, "slaney"),
        (8000, 256, 24, 300.0, 3400.0, False, "slaney"),
    ],
)
def test_mel_filterbank_equals_librosa(sr, n_fft, n_mels, fmin, fmax, htk, norm) -> None:
    ours = mel_filterbank(sample_rate=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=htk, norm=norm)
    ref = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=htk, norm=norm)
    assert ours.dtype == np.float32 and ours.shape == (n_mels, 1 + n_fft // 2)
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=0)


@pytest.mark.parametrize("signal", sorted(SIGNALS))
@pytest.mark.parametrize("p", PARAMS, ids=lambda p: f"sr{p[0]}-fft{p[1]}-hop{p[3]}-mels{p[4]}-c{int(p[9])}-{p[10]}-p{p[11]:g}")
def test_log_mel_frames_equals_librosa(p: tuple, signal: str) -> None:
    card = _card(_features(p))
    grid = WindowGrid.from_card(card)
    y = SIGNALS[signal](p[0], 3.0)
    n = grid.n_windows(y.size)
    ref_s, ref_log = _librosa_reference(y, p, n)
    ys, lead = _model_rate_signal(y, grid, n)
    ext = extractor_for(card)
    t = ext.n_frames(n)
    mel = ext.mel_frames(ys[lead + grid.read_offset :], t).T
    # Mel power: relative, with an absolute floor far below anything audible
    # (1e-12 of the loudest band) for bands of digital silence.
    np.testing.assert_allclose(mel, ref_s, rtol=1e-4, atol=1e-12 * ref_s.max())
    logged = ext.log_mel_frames(ys[lead + grid.read_offset :], t).T
    # Relative 1e-4 on the log values; the log crosses 0 where the mel power is
    # near 1, so a relative test alone is meaningless there: atol 1e-5 log units
    # (= 1e-5 relative in power) covers it.
    np.testing.assert_allclose(logged, ref_log, rtol=1e-4, atol=1e-5)


def _standardize_reference(windows: np.ndarray) -> np.ndarray:
    flat = windows.reshape(windows.shape[0], -1)
    mean = flat.mean(axis=1, keepdims=True)
    std = flat.std(axis=1, keepdims=True)
    out = np.where(std > 1e-6, (flat - mean) / np.where(std > 1e-6, std, 1.0), 0.0)
    return out.reshape(windows.shape)


@pytest.mark.parametrize("signal", sorted(SIGNALS))
@pytest.mark.parametrize("p", PARAMS, ids=lambda p: f"sr{p[0]}-fft{p[1]}-hop{p[3]}-mels{p[4]}-c{int(p[9])}-{p[10]}-p{p[11]:g}")
def test_segment_features_equals_librosa_windows(p: tuple, signal: str) -> None:
    card = _card(_features(p))
    grid = WindowGrid.from_card(card)
    y = SIGNALS[signal](p[0], 3.0)
    n = grid.n_windows(y.size)
    _, ref_log = _librosa_reference(y, p, n)
    # Windows cut from librosa's frame matrix: (n, n_mels, frames).
    idx = np.arange(n)[:, None] * HOP_FRAMES + np.arange(FRAMES)[None, :]
    ref = _standardize_reference(np.transpose(ref_log[:, idx], (1, 0, 2)))
    ys, lead = _model_rate_signal(y, grid, n)
    feats, rms = segment_features(ys, card, n, lead=lead)
    assert feats.shape == (n, p[4], FRAMES) and feats.dtype == np.float32
    assert rms.shape == (n,) and rms.dtype == np.float32
    # Standardisation divides by each window's std; in near-constant windows
    # (mostly digital silence with a little signal) that magnifies the 1e-6
    # float32 differences of the log-mel, so the check is absolute.
    np.testing.assert_allclose(feats, ref, rtol=0, atol=1e-4)


def test_segment_features_normalize_none_keeps_log_mel() -> None:
    p = PARAMS[1]
    card = _card({**_features(p), "normalize": "none"})
    grid = WindowGrid.from_card(card)
    y = _recorded_like(p[0], 2.0)
    n = grid.n_windows(y.size)
    _, ref_log = _librosa_reference(y, p, n)
    ys, lead = _model_rate_signal(y, grid, n)
    feats, _ = segment_features(ys, card, n, lead=lead)
    np.testing.assert_allclose(feats[1], ref_log[:, HOP_FRAMES : HOP_FRAMES + FRAMES], rtol=1e-4, atol=1e-5)


def test_segment_features_standardised_windows_have_zero_mean_unit_std() -> None:
    card = _card(_features(PARAMS[1]))
    grid = WindowGrid.from_card(card)
    y = _noise(22050, 4.0)
    n = grid.n_windows(y.size)
    ys, lead = _model_rate_signal(y, grid, n)
    feats, _ = segment_features(ys, card, n, lead=lead)
    np.testing.assert_allclose(feats.mean(axis=(1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(feats.std(axis=(1, 2)), 1.0, atol=1e-4)


def test_segment_features_silence_gives_zeros_not_nan() -> None:
    card = _card(_features(PARAMS[1]))
    grid = WindowGrid.from_card(card)
    ys = np.zeros(grid.read_samples * 5, np.float32)
    feats, rms = segment_features(ys, card, 3, lead=0)
    assert np.all(feats == 0.0)
    np.testing.assert_array_equal(rms, -200.0)


def test_segment_features_same_for_any_split() -> None:
    """The frames are computed once per call; splitting the windows must not change them."""
    card = _card(_features(PARAMS[2]))
    grid = WindowGrid.from_card(card)
    y = _recorded_like(22050, 5.0)
    n = grid.n_windows(y.size)
    ys, lead = _model_rate_signal(y, grid, n)
    whole, whole_rms = segment_features(ys, card, n, lead=lead)
    parts = [
        segment_features(ys, card, w1 - w0, lead=lead + w0 * grid.hop_samples)
        for w0, w1 in grid.segments(n, windows_per_segment=3)
    ]
    np.testing.assert_allclose(np.concatenate([f for f, _ in parts]), whole, atol=1e-5)
    np.testing.assert_allclose(np.concatenate([r for _, r in parts]), whole_rms, atol=1e-4)


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        (np.array([[3.0, 3.0, 3.0, 3.0]]), np.zeros((1, 4))),  # constant: zeros, not NaN
        (np.array([[1.0, -1.0, 1.0, -1.0]]), np.array([[1.0, -1.0, 1.0, -1.0]])),
        (np.array([[0.0, 2.0], [5.0, 5.0]]), np.array([[-1.0, 1.0], [0.0, 0.0]])),
    ],
)
def test_standardize_windows_cases(rows: np.ndarray, expected: np.ndarray) -> None:
    x = rows.astype(np.float32)
    out = standardize_windows(x)
    assert out is x
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_waveform_windows_cut_exactly() -> None:
    card = _card({"kind": "waveform", "sample_rate": 16000}, {"samples": 400, "hop_samples": 150}, layout="NT")
    y = np.arange(2000, dtype=np.float32)
    feats, rms = segment_features(y, card, 5, lead=100)
    assert feats.shape == (5, 400) and feats.dtype == np.float32
    for i in range(5):
        np.testing.assert_array_equal(feats[i], y[100 + 150 * i : 100 + 150 * i + 400])
    assert rms.shape == (5,)


@pytest.mark.parametrize(
    ("make", "expected_db"),
    [
        (lambda n: np.sin(2 * np.pi * 1000 * np.arange(n) / 16000), 20 * np.log10(np.sqrt(0.5))),  # -3.01
        (lambda n: 0.5 * np.ones(n), 20 * np.log10(0.5)),
        (lambda n: np.zeros(n), -200.0),  # floor: silence is finite
        (lambda n: 1e-12 * np.ones(n), -200.0),
    ],
)
def test_window_rms_dbfs_levels(make, expected_db: float) -> None:
    y = make(16000).astype(np.float32)
    rms = window_rms_dbfs(y, 4, hop_samples=3000, window_samples=4000)
    assert rms.dtype == np.float32
    np.testing.assert_allclose(rms, expected_db, atol=1e-3)


def test_window_rms_dbfs_counts_zeros_past_the_end() -> None:
    y = 0.5 * np.ones(3000, np.float32)
    # window 0 holds 3000 samples of 0.5 and 1000 zeros past the end; window 1
    # covers [2000, 6000): 1000 samples of 0.5, 3000 beyond the end
    rms = window_rms_dbfs(y, 2, hop_samples=2000, window_samples=4000)
    np.testing.assert_allclose(rms, [20 * np.log10(0.5 * np.sqrt(3000 / 4000)), 20 * np.log10(0.5 * np.sqrt(1000 / 4000))], atol=1e-4)


@pytest.mark.parametrize(("hop", "window"), [(3000, 4000), (512, 22528), (7, 11), (5000, 1000)])
def test_window_rms_dbfs_matches_direct_computation(hop: int, window: int) -> None:
    y = _recorded_like(16000, 3.0)
    n = 1 + (y.size - window) // hop
    rms = window_rms_dbfs(y, n, hop_samples=hop, window_samples=window)
    direct = [np.sqrt(np.mean(y[i * hop : i * hop + window].astype(np.float64) ** 2)) for i in range(n)]
    np.testing.assert_allclose(rms, 20 * np.log10(np.maximum(direct, 1e-10)), atol=1e-4)

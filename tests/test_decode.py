"""decode: probe, model_rate_samples, read_windows on real files written in tmp_path."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf

from soundbatch.card import ModelCard
from soundbatch.decode import AudioInfo, model_rate_samples, probe, read_windows
from soundbatch.errors import AudioDecodeError
from soundbatch.grid import WindowGrid


def _logmel_card(sample_rate: int = 22050, *, center: bool = False, frames: int = 44, hop_frames: int = 22) -> ModelCard:
    return ModelCard.model_validate(
        {
            "name": "t",
            "version": "1",
            "classes": ["a"],
            "output": {"activation": "softmax"},
            "input": {"layout": "NCHW"},
            "features": {
                "kind": "logmel", "sample_rate": sample_rate, "n_fft": 1024, "hop_length": 512,
                "n_mels": 64, "center": center,
            },
            "window": {"frames": frames, "hop_frames": hop_frames},
        }
    )


def _waveform_card(sample_rate: int = 16000) -> ModelCard:
    return ModelCard.model_validate(
        {
            "name": "t",
            "version": "1",
            "classes": ["a"],
            "output": {"activation": "softmax"},
            "input": {"layout": "NT"},
            "features": {"kind": "waveform", "sample_rate": sample_rate},
            "window": {"samples": 15600, "hop_samples": 7800},
        }
    )


def _signal(sr: int, seconds: float, channels: int, seed: int = 0) -> np.ndarray:
    """Noise, a chirp on channel 0 and a silence gap: (frames, channels) float32 in [-1, 1]."""
    rng = np.random.default_rng(seed)
    n = int(sr * seconds)
    t = np.arange(n) / sr
    x = 0.08 * rng.standard_normal((n, channels))
    x[:, 0] += 0.3 * np.sin(2 * np.pi * (200 * t + 300 * t**2))
    x[int(0.3 * n) : int(0.4 * n)] = 0.0
    return np.clip(x, -0.99, 0.99).astype(np.float32)


def _write(path: Path, x: np.ndarray, sr: int, fmt: str, subtype: str | None = None) -> Path:
    sf.write(str(path), x, sr, format=fmt, subtype=subtype)
    return path


def _read_all(path: Path, card: ModelCard, windows_per_segment: int | None):
    grid = WindowGrid.from_card(card)
    with open(path, "rb") as f:
        info = probe(f)
        n = grid.n_windows(model_rate_samples(info, card.sample_rate))
        if windows_per_segment is None:
            return info, [read_windows(f, info, card, 0, n)]
        return info, [read_windows(f, info, card, w0, w1) for w0, w1 in grid.segments(n, windows_per_segment=windows_per_segment)]


class CountingReader(io.RawIOBase):
    """A seekable file object that counts the bytes handed out."""

    def __init__(self, path: Path) -> None:
        self._f = open(path, "rb")
        self.bytes_read = 0
        self.name = str(path)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # noqa: ANN001
        n = self._f.readinto(b)
        self.bytes_read += n or 0
        return n

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def close(self) -> None:
        self._f.close()
        super().close()


# ---------------------------------------------------------------------------
# whole recording in one call == the same recording in segments

FILES = [
    # (format, subtype, source rate, channels)
    ("WAV", "PCM_16", 44100, 2),
    ("FLAC", "PCM_24", 48000, 1),
    ("OGG", "VORBIS", 32000, 1),
    ("MP3", "MPEG_LAYER_III", 44100, 2),
]


@pytest.mark.parametrize("windows_per_segment", [1, 3, 7])
@pytest.mark.parametrize("center", [False, True], ids=["nocenter", "center"])
@pytest.mark.parametrize("model_rate", [22050, 16000])
@pytest.mark.parametrize(("fmt", "subtype", "sr", "channels"), FILES, ids=[f[0] for f in FILES])
def test_read_windows_whole_equals_segments(
    tmp_path: Path, fmt: str, subtype: str, sr: int, channels: int, model_rate: int, center: bool, windows_per_segment: int
) -> None:
    path = _write(tmp_path / f"rec.{fmt.lower()}", _signal(sr, 9.0, channels), sr, fmt, subtype)
    # hop_frames 9 of frames 20: segment boundaries fall at every phase of the resampler
    card = _logmel_card(model_rate, center=center, frames=20, hop_frames=9)
    info, whole = _read_all(path, card, None)
    _, parts = _read_all(path, card, windows_per_segment)
    feats = np.concatenate([p.features for p in parts])
    assert feats.shape == whole[0].features.shape and feats.shape[0] > 20
    assert np.isfinite(feats).all()
    np.testing.assert_allclose(feats, whole[0].features, rtol=0, atol=1e-5)
    np.testing.assert_allclose(np.concatenate([p.rms_dbfs for p in parts]), whole[0].rms_dbfs, atol=1e-4)
    assert sum(p.frames_decoded for p in parts) == whole[0].frames_decoded == info.frames


@pytest.mark.parametrize(("fmt", "subtype", "sr", "channels"), FILES[:2], ids=[f[0] for f in FILES[:2]])
def test_read_windows_whole_equals_segments_waveform(tmp_path: Path, fmt: str, subtype: str, sr: int, channels: int) -> None:
    path = _write(tmp_path / f"rec.{fmt.lower()}", _signal(sr, 9.0, channels), sr, fmt, subtype)
    card = _waveform_card(16000)
    _, whole = _read_all(path, card, None)
    _, parts = _read_all(path, card, 5)
    np.testing.assert_allclose(np.concatenate([p.features for p in parts]), whole[0].features, atol=1e-6)
    assert whole[0].features.shape[1] == 15600


def test_read_windows_without_resampling_equals_librosa(tmp_path: Path) -> None:
    """At the model rate nothing is resampled: windows equal librosa on the raw samples."""
    x = _signal(22050, 6.0, 1)
    path = _write(tmp_path / "rec.wav", x, 22050, "WAV", "FLOAT")
    card = _logmel_card(22050, center=True)
    grid = WindowGrid.from_card(card)
    _, (seg,) = _read_all(path, card, None)
    n = seg.features.shape[0]
    y = np.concatenate([x[:, 0], np.zeros(n * grid.hop_samples + grid.read_samples, np.float32)])
    s = librosa.feature.melspectrogram(y=y, sr=22050, n_fft=1024, hop_length=512, n_mels=64, center=True, pad_mode="constant")
    logged = np.log(s.astype(np.float64) + 1e-9)
    for i in (0, n // 2, n - 1):
        w = logged[:, i * 22 : i * 22 + 44]
        np.testing.assert_allclose(seg.features[i], (w - w.mean()) / w.std(), atol=1e-4)


# ---------------------------------------------------------------------------
# reads only the segment


def test_read_windows_late_segment_reads_small_part_of_file(tmp_path: Path) -> None:
    sr = 44100
    rng = np.random.default_rng(3)
    x = (0.1 * rng.standard_normal(sr * 600)).astype(np.float32)  # 10 minutes
    path = _write(tmp_path / "long.wav", x, sr, "WAV", "PCM_16")
    card = _logmel_card(22050)
    grid = WindowGrid.from_card(card)
    reader = CountingReader(path)
    info = probe(reader)
    n = grid.n_windows(model_rate_samples(info, 22050))
    w0, w1 = grid.segments(n, windows_per_segment=64)[-2]  # a late, full segment (~33 s)
    reader.bytes_read = 0
    seg = read_windows(reader, info, card, w0, w1)
    size = path.stat().st_size
    assert seg.features.shape == (64, 64, 44)
    assert reader.bytes_read < 0.10 * size, f"read {reader.bytes_read} of {size} bytes"
    # and it read what it needed: the segment's own ~33 s at least
    assert reader.bytes_read >= 2 * seg.frames_decoded
    reader.close()


# ---------------------------------------------------------------------------
# probe and broken inputs


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", "empty"),
        (b"this is not audio, just text named .wav\n" * 20, "not a readable audio file"),
        (b"RIFF\x00\x00\x00\x00WAVE", "not a readable audio file"),
    ],
    ids=["zero_bytes", "text", "bare_riff"],
)
def test_probe_rejects_non_audio(tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with open(path, "rb") as f, pytest.raises(AudioDecodeError, match=match) as err:
        probe(f)
    assert "bad.wav" in str(err.value)
    if content:
        assert isinstance(err.value.__cause__, RuntimeError)  # the libsndfile error is kept


@pytest.mark.parametrize(("fmt", "subtype", "sr", "channels"), FILES + [("WAV", "FLOAT", 96000, 6)])
def test_probe_reports_header(tmp_path: Path, fmt: str, subtype: str, sr: int, channels: int) -> None:
    path = _write(tmp_path / f"rec.{fmt.lower()}", _signal(sr, 1.5, channels), sr, fmt, subtype)
    with open(path, "rb") as f:
        info = probe(f)
    assert (info.sample_rate, info.channels, info.format, info.subtype) == (sr, channels, fmt, subtype)
    assert abs(info.frames - int(1.5 * sr)) <= (2304 if fmt == "MP3" else 0)
    assert info.duration_s == pytest.approx(info.frames / sr)


@pytest.mark.parametrize(
    ("frames", "sr_in", "sr_out", "expected"),
    [(0, 44100, 22050, 0), (1, 44100, 22050, 1), (3, 44100, 22050, 2), (44100, 44100, 16000, 16000), (441, 44100, 16000, 160), (442, 44100, 16000, 161), (100, 8000, 16000, 200)],
)
def test_model_rate_samples_cases(frames: int, sr_in: int, sr_out: int, expected: int) -> None:
    info = AudioInfo(frames=frames, sample_rate=sr_in, channels=1, format="WAV", subtype="PCM_16", duration_s=frames / sr_in)
    assert model_rate_samples(info, sr_out) == expected


def _declared_wav_frames(data: bytes) -> int:
    """Frames the WAV header's data chunk declares (16-bit mono)."""
    pos = 12
    while pos + 8 <= len(data):
        tag, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        if tag == b"data":
            return size // 2
        pos += 8 + size + (size & 1)
    raise AssertionError("no data chunk")


def test_read_windows_truncated_wav_reports_short_decode(tmp_path: Path) -> None:
    full = _write(tmp_path / "full.wav", _signal(16000, 4.0, 1), 16000, "WAV", "PCM_16").read_bytes()
    declared = _declared_wav_frames(full)
    path = tmp_path / "truncated.wav"
    path.write_bytes(full[: len(full) * 2 // 3])
    card = _logmel_card(22050)
    info, parts = _read_all(path, card, 3)  # no exception
    decoded = sum(p.frames_decoded for p in parts)
    assert decoded < declared
    assert decoded == info.frames  # libsndfile reports what is there
    assert all(np.isfinite(p.features).all() for p in parts)


def test_read_windows_corrupt_flac_raises(tmp_path: Path) -> None:
    full = _write(tmp_path / "full.flac", _signal(16000, 6.0, 1), 16000, "FLAC", "PCM_16").read_bytes()
    path = tmp_path / "corrupt.flac"
    data = bytearray(full)
    mid = len(data) // 2
    data[mid : mid + 4000] = bytes(4000)  # zeroed frames in the middle: decoder loses sync
    path.write_bytes(bytes(data[: len(data) * 3 // 4]))
    card = _logmel_card(16000)
    with pytest.raises(AudioDecodeError, match="corrupt.flac: decoding frames .* failed") as err:
        _read_all(path, card, None)
    assert isinstance(err.value.__cause__, RuntimeError)  # libsndfile's "flac decoder lost sync"


@pytest.mark.parametrize(("bad", "count"), [(np.nan, 7), (np.inf, 3), (-np.inf, 1)])
def test_read_windows_non_finite_samples_replaced(tmp_path: Path, bad: float, count: int) -> None:
    x = _signal(16000, 3.0, 1)
    x[10000 : 10000 + count, 0] = bad
    path = _write(tmp_path / "nan.wav", x, 16000, "WAV", "FLOAT")
    card = _logmel_card(16000)
    _, (seg,) = _read_all(path, card, None)
    assert np.isfinite(seg.features).all() and np.isfinite(seg.rms_dbfs).all()
    assert seg.warnings == [f"replaced {count} non-finite (NaN/Inf) samples with 0"]
    # counted once over a recording read in segments (context is not double counted)
    _, parts = _read_all(path, card, 1)
    assert [w for p in parts for w in p.warnings] == seg.warnings


def test_read_windows_beyond_full_scale_kept_with_warning(tmp_path: Path) -> None:
    x = _signal(16000, 3.0, 1)
    x[5000:5010, 0] = 1.5
    path = _write(tmp_path / "loud.wav", x, 16000, "WAV", "FLOAT")
    _, (seg,) = _read_all(path, _logmel_card(16000), None)
    assert seg.warnings == ["10 samples beyond full scale (|x| > 1.0), kept as they are"]
    assert np.isfinite(seg.features).all()


@pytest.mark.parametrize("center", [False, True])
@pytest.mark.parametrize("sr", [16000, 44100])
def test_read_windows_one_sample_file(tmp_path: Path, sr: int, center: bool) -> None:
    path = _write(tmp_path / "one.wav", np.array([[0.5]], np.float32), sr, "WAV", "PCM_16")
    card = _logmel_card(16000, center=center)
    info, (seg,) = _read_all(path, card, None)
    assert info.frames == 1
    assert seg.features.shape == (1, 64, 44) and np.isfinite(seg.features).all()
    assert seg.frames_decoded == 1
    assert -200.0 <= seg.rms_dbfs[0] < -30.0  # at most one sample of 0.5 in a 1.4 s window
    if sr == 16000:  # no resampling: the sample is there (soxr returns nothing for 1 input sample)
        assert seg.rms_dbfs[0] > -200.0


@pytest.mark.parametrize("channels", [1, 2, 6])
def test_read_windows_mixes_channels_by_mean(tmp_path: Path, channels: int) -> None:
    sr = 22050
    x = _signal(sr, 4.0, channels, seed=channels)
    multi = _write(tmp_path / f"c{channels}.wav", x, sr, "WAV", "FLOAT")
    mono = _write(tmp_path / "mono.wav", x.mean(axis=1, keepdims=True), sr, "WAV", "FLOAT")
    card = _logmel_card(sr, center=True)
    _, (a,) = _read_all(multi, card, None)
    _, (b,) = _read_all(mono, card, None)
    np.testing.assert_allclose(a.features, b.features, atol=1e-4)
    np.testing.assert_allclose(a.rms_dbfs, b.rms_dbfs, atol=1e-4)


def test_read_windows_empty_range_and_bad_range(tmp_path: Path) -> None:
    path = _write(tmp_path / "rec.wav", _signal(16000, 3.0, 1), 16000, "WAV", "PCM_16")
    card = _logmel_card(16000)
    with open(path, "rb") as f:
        info = probe(f)
        empty = read_windows(f, info, card, 2, 2)
        assert empty.features.shape == (0, 64, 44) and empty.rms_dbfs.shape == (0,) and empty.frames_decoded == 0
        with pytest.raises(ValueError, match="window range"):
            read_windows(f, info, card, 0, 10_000)

"""synth.py: event placement, levels, file formats, archives with truth."""

from __future__ import annotations

import io
import os
from datetime import UTC, datetime

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from soundbatch import storage, synth
from soundbatch.naming import parse_recording_name
from soundbatch.synth import BANDS_HZ, SynthEvent

SR = 16000


def _dbfs(x: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(np.asarray(x, np.float64) ** 2)) + 1e-20))


def _band_share(x: np.ndarray, sr: int, lo: float, hi: float) -> float:
    """Fraction of the energy of ``x`` within [lo, hi] Hz."""
    spec = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / sr)
    return float(spec[(f >= lo) & (f <= hi)].sum() / spec.sum())


@pytest.mark.parametrize("kind", ["tone", "chirp", "noise"])
def test_render_event_placement_and_level(kind):
    ev = SynthEvent(1.0, 2.0, kind, freq_hz=400.0, freq_end_hz=600.0, level_dbfs=-20.0)
    x = synth.render([ev], duration_s=3.0, sample_rate=SR, seed=1)
    assert x.dtype == np.float32 and x.shape == (3 * SR,)
    inside = x[int(1.05 * SR) : int(1.95 * SR)]
    assert _dbfs(inside) == pytest.approx(-20.0, abs=0.5)
    for outside in (x[: int(0.95 * SR)], x[int(2.05 * SR) :]):
        assert _dbfs(outside) == pytest.approx(-70.0, abs=1.0)  # the default background
    assert _band_share(inside, SR, 380, 620) > 0.99


def test_render_silence_kind_leaves_background():
    quiet = synth.render([], duration_s=1.0, sample_rate=SR, seed=3, noise_dbfs=-50.0)
    same = synth.render([SynthEvent(0.2, 0.8, "silence")], duration_s=1.0, sample_rate=SR, seed=3, noise_dbfs=-50.0)
    np.testing.assert_array_equal(quiet, same)
    assert _dbfs(quiet) == pytest.approx(-50.0, abs=0.5)


def test_render_digital_silence_and_seed():
    assert not synth.render([], duration_s=0.5, sample_rate=SR, seed=0, noise_dbfs=None).any()
    a = synth.render([SynthEvent(0, 0.5, "noise", freq_hz=1000)], duration_s=0.5, sample_rate=SR, seed=7)
    b = synth.render([SynthEvent(0, 0.5, "noise", freq_hz=1000)], duration_s=0.5, sample_rate=SR, seed=7)
    c = synth.render([SynthEvent(0, 0.5, "noise", freq_hz=1000)], duration_s=0.5, sample_rate=SR, seed=8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_render_event_past_end_is_cut():
    x = synth.render([SynthEvent(0.5, 5.0, "tone", freq_hz=300)], duration_s=1.0, sample_rate=SR, seed=0)
    assert x.shape == (SR,)
    assert _dbfs(x[int(0.6 * SR) :]) == pytest.approx(-20.0, abs=0.5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(onset_s=2.0, offset_s=1.0, kind="tone"), r"offset_s=1.0 must be greater than onset_s=2.0"),
        (dict(onset_s=0.0, offset_s=1.0, kind="whistle"), r"kind='whistle'"),
        (dict(onset_s=-1.0, offset_s=1.0, kind="tone"), r"onset_s=-1.0"),
    ],
)
def test_synth_event_invalid(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SynthEvent(**kwargs)


@pytest.mark.parametrize("ext", [".wav", ".flac", ".ogg", ".mp3", ".aiff"])
def test_write_recording_formats(tmp_path, ext):
    x = synth.render([SynthEvent(0.1, 0.9, "tone", freq_hz=500)], duration_s=1.0, sample_rate=SR, seed=0)
    path = str(tmp_path / f"a{ext}")
    synth.write_recording(path, x, SR)
    info = sf.info(path)
    assert info.samplerate == SR
    y, _ = sf.read(path, dtype="float32")
    assert _dbfs(y[int(0.2 * SR) : int(0.8 * SR)]) == pytest.approx(-20.0, abs=1.5)


def test_write_recording_unknown_extension(tmp_path):
    with pytest.raises(ValueError, match=r"a\.xyz"):
        synth.write_recording(str(tmp_path / "a.xyz"), np.zeros(10), SR)


@pytest.fixture(scope="module")
def small_archive(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("arch") / "OUT")
    truth = synth.make_archive(out, sensors=2, hours=2.5 / 60, file_minutes=1, sample_rate=SR, seed=4)
    return out, truth


def test_make_archive_layout(small_archive):
    out, truth = small_archive
    audio = [os.path.relpath(e.uri, out) for e in storage.list_inputs([out], extensions=storage.AUDIO_EXTENSIONS)]
    assert audio == [
        f"{s}/{t}.flac" for s in ("S01", "S02") for t in ("20261123_000000", "20261123_000100", "20261123_000200")
    ]
    assert os.path.exists(os.path.join(out, "truth.parquet"))
    assert os.path.exists(os.path.join(out, "S02", "20261123_000100.txt"))
    assert sf.info(os.path.join(out, "S01", "20261123_000200.flac")).duration == pytest.approx(30.0)
    name = parse_recording_name(os.path.join(out, "S02", "20261123_000100.flac"), None)
    assert name.sensor == "S02"
    assert name.start_time == datetime(2026, 11, 23, 0, 1, tzinfo=UTC)


def test_make_archive_truth_rows(small_archive):
    out, truth = small_archive
    assert truth.schema == synth.TRUTH_SCHEMA
    assert pq.read_table(os.path.join(out, "truth.parquet")).equals(truth)
    rows = truth.to_pylist()
    assert len(rows) > 6
    assert {r["label"] for r in rows} == {"low", "high"}
    assert rows == sorted(rows, key=lambda r: (r["recording"], r["onset_s"]))
    for r in rows:
        assert os.path.isabs(r["recording"]) and r["recording"].endswith(".flac")
        assert r["sensor"] == os.path.basename(os.path.dirname(r["recording"]))
        assert 0 <= r["onset_s"] < r["offset_s"] <= 60.0
    # The Audacity label track holds the same events.
    rec = rows[0]["recording"]
    lines = open(rec[: -len(".flac")] + ".txt").read().splitlines()
    mine = [r for r in rows if r["recording"] == rec]
    assert len(lines) == len(mine)
    start, end, label = lines[0].split("\t")
    assert (float(start), float(end), label) == pytest.approx((mine[0]["onset_s"], mine[0]["offset_s"], mine[0]["label"]))


def test_make_archive_truth_matches_audio(small_archive):
    """Events carry their energy in their label's band; gaps are below a -60 dBFS gate."""
    out, truth = small_archive
    rows = truth.to_pylist()
    rec = rows[0]["recording"]
    x, sr = sf.read(rec, dtype="float64")
    events = [r for r in rows if r["recording"] == rec]
    covered = np.zeros(len(x), bool)
    for r in events:
        i0, i1 = int(r["onset_s"] * sr), int(r["offset_s"] * sr)
        covered[max(0, i0 - sr // 10) : i1 + sr // 10] = True
        seg = x[i0 + sr // 50 : i1 - sr // 50]
        lo, hi = BANDS_HZ[r["label"]]
        assert _dbfs(seg) > -40
        assert _band_share(seg, sr, lo, hi) > 0.95, r
    gaps = x[~covered]
    assert gaps.size > sr
    assert _dbfs(gaps) < -60


def test_make_archive_is_deterministic(tmp_path):
    a = synth.make_archive(str(tmp_path / "a"), sensors=1, hours=0.5 / 60, file_minutes=1, sample_rate=8000, seed=9)
    b = synth.make_archive(str(tmp_path / "b"), sensors=1, hours=0.5 / 60, file_minutes=1, sample_rate=8000, seed=9)
    assert a.drop(["recording"]).equals(b.drop(["recording"]))
    fa = open(tmp_path / "a" / "S01" / "20261123_000000.flac", "rb").read()
    fb = open(tmp_path / "b" / "S01" / "20261123_000000.flac", "rb").read()
    assert fa == fb


@pytest.mark.s3
def test_make_archive_on_s3(s3_bucket):
    out = f"{s3_bucket}/synth"
    truth = synth.make_archive(out, sensors=1, hours=1 / 60, file_minutes=1, sample_rate=8000, seed=2)
    keys = [e.uri for e in storage.list_files(out)]
    assert keys == [
        f"{out}/S01/20261123_000000.flac",
        f"{out}/S01/20261123_000000.txt",
        f"{out}/truth.parquet",
    ]
    assert set(truth.column("recording").to_pylist()) == {f"{out}/S01/20261123_000000.flac"}
    stored = pq.read_table(io.BytesIO(storage.read_bytes(f"{out}/truth.parquet")))
    assert stored.equals(truth)
    with storage.open_input(f"{out}/S01/20261123_000000.flac") as f:
        assert sf.info(f).duration == pytest.approx(60.0)

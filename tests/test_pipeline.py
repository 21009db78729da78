"""End to end: recordings on S3 (moto) -> a real local Ray -> real ONNX -> Parquet on S3."""

from __future__ import annotations

import io

import librosa
import numpy as np
import onnx
import polars as pl
import pytest
import soundfile as sf

from soundbatch import storage
from soundbatch.config import build_config
from soundbatch.errors import ConfigError, ModelCardError
from soundbatch.onnx_build import build_band_energy_model, make_card
from soundbatch.pipeline import run_sweep
from soundbatch.report import scan
from soundbatch.synth import SynthEvent, render

pytestmark = [pytest.mark.ray, pytest.mark.timeout(240)]

SR_MODEL = 22050
# The truth of the test recording: (label, onset_s, offset_s). Events straddle
# segment boundaries when segments are 5 s long.
TRUTH = [("low", 5.0, 12.3), ("high", 20.0, 31.7), ("low", 40.2, 47.9)]
DURATION_S = 60.0


def _band_range(lo_hz: float, hi_hz: float, n_mels: int = 64) -> tuple[int, int]:
    centres = librosa.mel_frequencies(n_mels + 2, fmin=0.0, fmax=SR_MODEL / 2)[1:-1]
    idx = np.flatnonzero((centres >= lo_hz) & (centres <= hi_hz))
    return int(idx[0]), int(idx[-1]) + 1


@pytest.fixture(scope="module")
def band_model(tmp_path_factory) -> str:
    """A 2-class analytic model: `low` (150-800 Hz) vs `high` (2.5-3.9 kHz, what an 8 kHz file can carry), softmax.

    The test signal keeps its `high` noise below 3.8 kHz so 8 kHz files carry it.

    It labels a window by any trace of a band, so its windows do not overlap
    (frames == hop_frames): then every verdict is within one hop of the truth.
    """
    card = make_card(layout="NCHW", classes=("low", "high"), name="bands", version="1.0",
                     frames=22, hop_frames=22)
    model = build_band_energy_model(card, bands={"low": _band_range(150, 800), "high": _band_range(2500, 3900)})
    path = tmp_path_factory.mktemp("model") / "bands.onnx"
    onnx.save(model, path)
    return str(path)


def _recording(sample_rate: int, channels: int, seed: int = 0) -> np.ndarray:
    events = [
        SynthEvent(5.0, 12.3, "tone", freq_hz=400.0, level_dbfs=-20.0),
        SynthEvent(20.0, 31.7, "noise", freq_hz=2800.0, freq_end_hz=3800.0, level_dbfs=-25.0),
        SynthEvent(40.2, 47.9, "chirp", freq_hz=300.0, freq_end_hz=600.0, level_dbfs=-22.0),
    ]
    mono = render(events, duration_s=DURATION_S, sample_rate=sample_rate, seed=seed, noise_dbfs=-75.0)
    if channels == 1:
        return mono
    return np.stack([mono * (1.0 - 0.1 * c) for c in range(channels)], axis=1)


def _put(uri: str, audio: np.ndarray, sample_rate: int, fmt: str, subtype: str | None = None) -> None:
    buf = io.BytesIO()
    sf.write(buf, audio, sample_rate, format=fmt, subtype=subtype)
    storage.write_bytes(uri, buf.getvalue())


def _sweep(**settings):
    return run_sweep(build_config(**settings))


def _check_timeline(events: pl.DataFrame, hop_s: float, duration_s: float) -> None:
    """Every truth event found once, onset and offset within one hop; the rest silence."""
    ev = events.sort("onset_s")
    found = ev.filter(pl.col("class").is_in(["low", "high"]))
    assert found.select("class").to_series().to_list() == [t[0] for t in TRUTH]
    for (label, onset, offset), row in zip(TRUTH, found.iter_rows(named=True)):
        assert abs(row["onset_s"] - onset) <= hop_s + 1e-6, (label, row)
        assert abs(row["offset_s"] - offset) <= hop_s + 1e-6, (label, row)
        assert row["confidence"] > 0.9
    others = set(ev.filter(~pl.col("class").is_in(["low", "high"]))["class"].to_list())
    assert others <= {"silence"}
    # Single-label model: the events tile the recording.
    onsets, offsets = ev["onset_s"].to_list(), ev["offset_s"].to_list()
    assert onsets[0] == 0.0
    assert offsets[-1] == pytest.approx(duration_s)
    assert all(a == b for a, b in zip(offsets[:-1], onsets[1:]))


def test_run_sweep_s3_mixed_formats_timelines(ray_local, s3_bucket, band_model):
    inputs = {
        "in/S01/20261123_010000.WAV": (44100, 2, "WAV", "PCM_16"),
        "in/S01/20261123_011000.flac": (48000, 1, "FLAC", None),
        "in/S02/20261123_020000.ogg": (32000, 2, "OGG", "VORBIS"),
        "in/S02/20261123_021000.mp3": (22050, 1, "MP3", None),
        "in/S03/20261123_030000.wav": (8000, 1, "WAV", "PCM_16"),
        "in/S03/20261123_031000.wav": (96000, 1, "WAV", "FLOAT"),
    }
    for key, (sr, ch, fmt, subtype) in inputs.items():
        _put(f"{s3_bucket}/{key}", _recording(sr, ch), sr, fmt, subtype)
    storage.write_bytes(f"{s3_bucket}/in/S04/20261123_040000.wav", b"this is not audio at all")
    storage.write_bytes(f"{s3_bucket}/in/S04/20261123_041000.flac", b"")
    out = f"{s3_bucket}/out"

    summary = _sweep(inputs=(f"{s3_bucket}/in/",), out=out, model=band_model, write_windows=True)

    assert (summary.listed, summary.ok, summary.errors) == (8, 6, 2)
    recordings = scan(out, "recordings").collect()
    assert recordings.height == 8
    assert recordings["recording"].n_unique() == 8
    errors = recordings.filter(pl.col("status") == "error")
    assert sorted(errors["recording"].to_list()) == [
        f"{s3_bucket}/in/S04/20261123_040000.wav", f"{s3_bucket}/in/S04/20261123_041000.flac"]
    assert all(e for e in errors["error"].to_list())
    ok = recordings.filter(pl.col("status") == "ok")
    assert sorted(ok["sensor"].unique().to_list()) == ["S01", "S02", "S03"]
    # Clean files carry no warning (an MP3's length is only estimated by its header).
    assert ok.filter(~pl.col("recording").str.ends_with(".mp3"))["warning"].null_count() == 5
    assert ok["start_time"].null_count() == 0
    # Hive partition from the AudioMoth start time.
    assert set(recordings["date"].cast(pl.String).to_list()) == {"2026-11-23"}

    card_hop = 22 * 512 / SR_MODEL  # frames == hop_frames == 22
    events = scan(out, "events").collect()
    for uri in ok["recording"].to_list():
        rec = ok.filter(pl.col("recording") == uri).row(0, named=True)
        # MP3 decoders add a little padding; the timeline must still fit its own duration.
        _check_timeline(events.filter(pl.col("recording") == uri), card_hop, rec["duration_s"])
        assert rec["n_events"] == events.filter(pl.col("recording") == uri).height
    windows = scan(out, "windows").collect()
    assert windows.height == ok["n_windows"].sum()
    assert windows.filter(pl.col("label") == "silence")["confidence"].null_count() == \
        windows.filter(pl.col("label") == "silence").height
    # Absolute times follow the file name.
    first = events.filter(pl.col("recording").str.ends_with("20261123_010000.WAV")).sort("onset_s").row(1, named=True)
    assert first["start_time"].isoformat().startswith("2026-11-23T01:00:0")
    # Nothing of the commit protocol is left behind.
    assert storage.list_files(f"{out}/_staging") == []
    assert storage.list_files(f"{out}/_commits") == []
    assert len(storage.list_files(f"{out}/runs", suffix=".json")) == 1


def test_run_sweep_again_skips_done_recordings(ray_local, s3_bucket, band_model):
    for i in range(3):
        _put(f"{s3_bucket}/in/S01/20261123_0{i}0000.flac", _recording(16000, 1, seed=i), 16000, "FLAC")
    out = f"{s3_bucket}/out"
    first = _sweep(inputs=(f"{s3_bucket}/in/",), out=out, model=band_model)
    files_before = {e.uri for e in storage.list_files(f"{out}/events")} | {
        e.uri for e in storage.list_files(f"{out}/recordings")}

    again = _sweep(inputs=(f"{s3_bucket}/in/",), out=out, model=band_model)
    assert (first.ok, again.skipped, again.ok, again.errors) == (3, 3, 0, 0)
    files_after = {e.uri for e in storage.list_files(f"{out}/events")} | {
        e.uri for e in storage.list_files(f"{out}/recordings")}
    assert files_after == files_before

    # A new file arrives: only it is processed.
    _put(f"{s3_bucket}/in/S01/20261123_030000.flac", _recording(16000, 1, seed=9), 16000, "FLAC")
    third = _sweep(inputs=(f"{s3_bucket}/in/",), out=out, model=band_model)
    assert (third.skipped, third.ok) == (3, 1)
    assert scan(out, "recordings").collect().height == 4
    # Another setting that changes results is another configuration: all done again.
    fourth = _sweep(inputs=(f"{s3_bucket}/in/",), out=out, model=band_model, min_event_s=1.0)
    assert (fourth.skipped, fourth.ok) == (0, 4)


def test_run_sweep_segments_equal_whole(ray_local, tmp_path, band_model):
    audio = _recording(44100, 2)
    src = tmp_path / "in" / "long.flac"
    src.parent.mkdir()
    sf.write(src, audio, 44100)
    results = {}
    for segment_s in (5.0, 600.0):
        out = tmp_path / f"out-{segment_s:g}"
        _sweep(inputs=(str(src),), out=str(out), model=band_model, write_windows=True, segment_s=segment_s)
        results[segment_s] = (
            scan(str(out), "windows").collect().sort("t_start_s"),
            scan(str(out), "events").collect().sort("onset_s"),
        )
    (w_seg, e_seg), (w_whole, e_whole) = results[5.0], results[600.0]
    assert w_seg.height == w_whole.height > 100
    np.testing.assert_array_equal(w_seg["t_start_s"].to_numpy(), w_whole["t_start_s"].to_numpy())
    np.testing.assert_allclose(w_seg["rms_dbfs"].to_numpy(), w_whole["rms_dbfs"].to_numpy(), atol=1e-3)
    np.testing.assert_allclose(np.stack(w_seg["probs"].to_numpy()), np.stack(w_whole["probs"].to_numpy()), atol=1e-4)
    assert w_seg["label"].to_list() == w_whole["label"].to_list()
    cols = ["class", "onset_s", "offset_s", "n_windows"]
    assert e_seg.select(cols).rows() == e_whole.select(cols).rows()


def test_run_sweep_uri_list_with_missing_entry(ray_local, tmp_path, band_model):
    good = tmp_path / "in" / "good.flac"
    good.parent.mkdir()
    sf.write(good, _recording(16000, 1), 16000)
    listing = tmp_path / "uris.txt"
    listing.write_text(f"{good}\n{tmp_path}/in/gone.wav\n")
    summary = _sweep(inputs=(str(listing),), out=str(tmp_path / "out"), model=band_model)
    assert (summary.listed, summary.ok, summary.errors) == (2, 1, 1)
    rec = scan(str(tmp_path / "out"), "recordings").collect().sort("recording")
    assert rec["status"].to_list() == ["error", "ok"]  # gone.wav sorts before good.flac
    assert "gone.wav" in rec["error"][0] and "not exist" in rec["error"][0]


def test_run_sweep_bad_settings_fail_before_work(tmp_path, band_model):
    (tmp_path / "in").mkdir()
    with pytest.raises(ConfigError, match="min_event_s"):
        build_config(inputs=(str(tmp_path / "in"),), out=str(tmp_path / "out"), min_event_s=-1)
    with pytest.raises(ConfigError, match="path_pattern|placeholder"):
        _sweep(inputs=(str(tmp_path / "in"),), out=str(tmp_path / "out"), model=band_model,
               path_pattern="{sensor}/{nonsense}")
    bad = make_card(layout="NCHW", classes=("low", "high"), n_mels=40, frames=22, hop_frames=22)
    model = onnx.load(band_model)
    from soundbatch.onnx_build import embed_card

    wrong = tmp_path / "wrong.onnx"
    onnx.save(embed_card(model, bad), wrong)
    with pytest.raises(ModelCardError, match="40"):
        _sweep(inputs=(str(tmp_path / "in"),), out=str(tmp_path / "out"), model=str(wrong))
    assert not (tmp_path / "out").exists()

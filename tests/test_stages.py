"""The batch functions of stages.py on plain batches, before Ray ever sees them."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import soundfile as sf

from soundbatch.grid import WindowGrid
from soundbatch.model import load_model
from soundbatch.stages import (
    SEGMENT_SCHEMA,
    SegmentClassifier,
    SegmentPipeline,
    decode_batch,
    plan_segments,
)


@pytest.fixture(scope="module")
def model():
    return load_model(None)


def _batch(rows: list[dict]) -> dict[str, np.ndarray]:
    """Rows as Ray hands them to map_batches (batch_format="numpy")."""
    table = pa.Table.from_pylist(rows, schema=SEGMENT_SCHEMA)
    return {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}


def _tone(path, seconds: float, sample_rate: int, channels: int = 1) -> str:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    mono = 0.1 * np.sin(2 * np.pi * 440 * t)
    sf.write(path, np.repeat(mono[:, None], channels, axis=1), sample_rate)
    return str(path)


def test_plan_segments_tile_the_recording(tmp_path, model):
    uri = _tone(tmp_path / "a.flac", 75.0, 44100)
    rows = plan_segments(uri, 100, "e1", card=model.card, segment_s=20.0)
    total = WindowGrid.from_card(model.card).n_windows(75 * 22050)
    assert [r["seg"] for r in rows] == list(range(len(rows)))
    assert {r["n_segments"] for r in rows} == {len(rows)} and len(rows) == 4
    assert rows[0]["w0"] == 0 and rows[-1]["w1"] == total
    assert all(a["w1"] == b["w0"] for a, b in zip(rows, rows[1:]))
    assert {(r["frames"], r["sample_rate"], r["channels"], r["error"]) for r in rows} == {(75 * 44100, 44100, 1, "")}


def test_plan_segments_caps_samples_for_many_channels(tmp_path, model):
    uri = _tone(tmp_path / "wide.wav", 60.0, 96000, channels=8)
    rows = plan_segments(uri, 100, None, card=model.card, segment_s=300.0)
    longest_s = max(r["w1"] - r["w0"] for r in rows) * model.card.hop_s
    # 32 M samples / (96 kHz x 8 channels) = 43.7 s at most per segment.
    assert len(rows) == 2 and longest_s <= 43.7


@pytest.mark.parametrize("content", [b"", b"not audio at all", b"RIFF\x00\x00\x00\x00WAVEfmt "])
def test_plan_segments_broken_file_is_one_error_row(tmp_path, model, content):
    path = tmp_path / "broken.wav"
    path.write_bytes(content)
    rows = plan_segments(str(path), len(content), None, card=model.card, segment_s=300.0)
    assert len(rows) == 1
    assert rows[0]["error"] and rows[0]["w0"] == rows[0]["w1"] == 0


def test_plan_segments_missing_file_is_an_error_row(tmp_path, model):
    rows = plan_segments(str(tmp_path / "gone.wav"), 10, None, card=model.card, segment_s=300.0)
    assert "gone.wav" in rows[0]["error"]


def test_decode_batch_features_and_passthrough(tmp_path, model):
    uri = _tone(tmp_path / "a.wav", 30.0, 22050)
    rows = plan_segments(uri, 1, "e", card=model.card, segment_s=10.0)
    rows.append(dict(rows[0], recording="/x/broken.wav", error="boom", seg=0, n_segments=1))
    out = decode_batch(_batch(rows), card_json=model.card.model_dump_json())
    for i, row in enumerate(rows[:-1]):
        n = row["w1"] - row["w0"]
        assert len(out["features"][i]) == n * 64 * 44 * 4
        assert len(out["rms_dbfs"][i]) == n * 4
        rms = np.frombuffer(out["rms_dbfs"][i], np.float32)
        if i == len(rows) - 2:
            rms = rms[:-1]  # the recording's last window runs past its end, into zeros
        np.testing.assert_allclose(rms, 20 * np.log10(0.1 / np.sqrt(2)), atol=0.1)
    assert out["error"][-1] == "boom" and out["features"][-1] == b""
    assert list(out["recording"]) == [r["recording"] for r in rows]


def test_segment_pipeline_gives_probs_per_window(tmp_path, model):
    uri = _tone(tmp_path / "a.wav", 12.0, 16000)
    rows = plan_segments(uri, 1, "e", card=model.card, segment_s=5.0)
    out = SegmentPipeline(model)(_batch(rows))
    assert "features" not in out
    for i, row in enumerate(rows):
        probs = np.frombuffer(out["probs"][i], np.float32).reshape(-1, 10)
        assert probs.shape[0] == row["w1"] - row["w0"]
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_segment_classifier_failure_marks_only_the_culprit(tmp_path, model, monkeypatch):
    uri = _tone(tmp_path / "a.wav", 12.0, 16000)
    rows = plan_segments(uri, 1, "e", card=model.card, segment_s=5.0)
    decoded = decode_batch(_batch(rows), card_json=model.card.model_dump_json())
    classifier = SegmentClassifier(model)
    real = classifier.classifier.predict
    culprit = np.frombuffer(decoded["features"][1], np.float32)[: 64 * 44].reshape(64, 44)

    def fail_on_culprit(x):
        if any(np.array_equal(w, culprit) for w in x):
            raise RuntimeError("onnxruntime: invalid input")
        return real(x)

    monkeypatch.setattr(classifier.classifier, "predict", fail_on_culprit)
    out = classifier(decoded)
    assert "inference failed" in out["error"][1]
    assert out["error"][0] == "" and len(out["probs"][0]) > 0
    assert out["probs"][1] == b""


def test_plan_segments_truncated_wav_warns(tmp_path, model):
    path = tmp_path / "cut.wav"
    _tone(path, 10.0, 16000)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # the header still declares 10 s
    rows = plan_segments(str(path), len(data) // 2, None, card=model.card, segment_s=300.0)
    assert rows[0]["error"] == ""
    assert rows[0]["warning"].startswith("truncated: the header declares 160000 frames")
    assert rows[0]["frames"] < 160000


def test_plan_segments_intact_wav_has_no_warning(tmp_path, model):
    rows = plan_segments(_tone(tmp_path / "ok.wav", 3.0, 16000), 1, None, card=model.card, segment_s=300.0)
    assert rows[0]["warning"] == ""

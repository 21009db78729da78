"""Driver-side assembly: segments back into recordings, lost segments into error rows."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest
import soundfile as sf

from soundbatch.assemble import RecordingAssembler, RunContext
from soundbatch.model import load_model
from soundbatch.stages import SEGMENT_SCHEMA, SegmentPipeline, plan_segments


@pytest.fixture(scope="module")
def model():
    return load_model(None)


@pytest.fixture
def ctx(model):
    return RunContext(card=model.card, model_id=model.model_id, run_id="r1", config_hash="h",
                      rms_gate_dbfs=-60.0, thresholds=model.card.thresholds(), min_event_s=0.0,
                      max_gap_s=0.0, write_windows=True, path_pattern=None, run_date=dt.date(2026, 11, 24))


def _results(rows: list[dict], model) -> list[dict]:
    table = pa.Table.from_pylist(rows, schema=SEGMENT_SCHEMA)
    batch = {n: table.column(n).to_numpy(zero_copy_only=False) for n in table.column_names}
    out = SegmentPipeline(model)(batch)
    return [{k: v[i] for k, v in out.items()} for i in range(len(rows))]


def test_assembler_out_of_order_segments_make_one_recording(tmp_path, model, ctx):
    path = tmp_path / "a.wav"
    sf.write(path, 0.1 * np.random.default_rng(0).standard_normal(16000 * 30), 16000)
    rows = plan_segments(str(path), 1, "e", card=model.card, segment_s=10.0)
    results = _results(rows, model)
    assembler = RecordingAssembler(ctx)
    assert [assembler.add(r) for r in reversed(results[1:])] == [None] * (len(results) - 1)
    finished = assembler.add(results[0])
    rec = finished.tables["recordings"].to_pylist()[0]
    assert rec["status"] == "ok" and rec["n_windows"] == rows[0]["n_windows_total"]
    assert finished.tables["windows"].num_rows == rec["n_windows"]
    # The untrained model: every audible window is unknown, one event spans it all.
    events = finished.tables["events"].to_pylist()
    assert [(e["class"], e["onset_s"], e["offset_s"]) for e in events] == [("unknown", 0.0, 30.0)]


def test_assembler_abandon_turns_lost_segments_into_error_rows(tmp_path, model, ctx):
    paths = []
    for name in ("done.wav", "half.wav", "never.wav"):
        paths.append(tmp_path / name)
        sf.write(paths[-1], 0.1 * np.ones(16000 * 25), 16000)
    plans = [plan_segments(str(p), 1, "e", card=model.card, segment_s=10.0) for p in paths]
    segments = pa.Table.from_pylist([r for plan in plans for r in plan], schema=SEGMENT_SCHEMA)
    assembler = RecordingAssembler(ctx)
    for r in _results(plans[0], model):
        assembler.add(r)
    assembler.add(_results(plans[1], model)[0])  # segments 1 and 2 of half.wav never come

    lost = assembler.abandon(segments, reason="a worker died")
    rows = {f.uri.rsplit("/", 1)[-1]: f.tables["recordings"].to_pylist()[0] for f in lost}
    assert set(rows) == {"half.wav", "never.wav"}
    assert all(r["status"] == "error" for r in rows.values())
    assert "a worker died" in rows["half.wav"]["error"] and "[1, 2] of 3" in rows["half.wav"]["error"]
    assert "[0, 1, 2] of 3" in rows["never.wav"]["error"]
    assert assembler.abandon(segments, reason="again") == []

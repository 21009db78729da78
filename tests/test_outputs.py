"""The commit protocol of outputs.py on local disk and on the moto S3 server."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pyarrow as pa
import pytest

from soundbatch import storage
from soundbatch.errors import SchemaError
from soundbatch.outputs import OutputStore
from soundbatch.report import scan
from soundbatch.schema import EVENTS, RECORDINGS

NOW = dt.datetime(2026, 11, 23, 1, 0, tzinfo=dt.timezone.utc)


def _recording_row(uri: str, *, model: str = "m@1#abc", config_hash: str = "h1", etag: str = "e1") -> dict:
    return dict(recording=uri, sensor="S01", start_time=NOW, status="ok", error=None, warning=None,
                duration_s=60.0, sample_rate=44100, channels=1, bytes=100, etag=etag, n_windows=117,
                n_events=1, model=model, run_id="r1", config_hash=config_hash, processed_at=NOW)


def _event_row(uri: str) -> dict:
    return {"recording": uri, "sensor": "S01", "class": "siren", "onset_s": 1.0, "offset_s": 2.0,
            "start_time": NOW, "end_time": NOW, "confidence": 0.9, "mean_confidence": 0.8,
            "n_windows": 2, "model": "m@1#abc", "run_id": "r1"}


def _parts(uris: list[str]) -> dict[str, dict[str, pa.Table]]:
    return {
        "recordings": {"2026-11-23": pa.Table.from_pylist([_recording_row(u) for u in uris], schema=RECORDINGS)},
        "events": {"2026-11-23": pa.Table.from_pylist([_event_row(u) for u in uris], schema=EVENTS)},
    }


@pytest.fixture(params=["local", "s3"])
def out_root(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "out")
    bucket = request.getfixturevalue("s3_bucket")
    return f"{bucket}/out"


def _visible(root: str, table: str) -> int:
    files = storage.list_files(storage.join(root, table), suffix=".parquet")
    return scan(root, table).collect().height if files else 0


def test_commit_makes_rows_visible_and_cleans_up(out_root):
    store = OutputStore(out_root)
    finals = store.commit("run1-00000", _parts(["/a.wav", "/b.wav"]))
    assert [f.rsplit("/", 3)[-3] for f in finals] == ["events", "recordings"]
    assert _visible(out_root, "recordings") == 2
    assert _visible(out_root, "events") == 2
    assert storage.list_files(storage.join(out_root, "_staging")) == []
    assert storage.list_files(storage.join(out_root, "_commits")) == []


def test_commit_killed_before_record_leaves_nothing_visible(out_root, monkeypatch):
    store = OutputStore(out_root)
    real_write = storage.write_bytes

    def write_but_die_on_record(uri, data):
        if "/_commits/" in uri:
            raise KeyboardInterrupt("killed before the commit record")
        real_write(uri, data)

    monkeypatch.setattr(storage, "write_bytes", write_but_die_on_record)
    with pytest.raises(KeyboardInterrupt):
        store.commit("run1-00000", _parts(["/a.wav"]))
    monkeypatch.undo()
    assert _visible(out_root, "events") == _visible(out_root, "recordings") == 0
    assert OutputStore(out_root).recover() == 0
    assert _visible(out_root, "recordings") == 0
    assert OutputStore(out_root).done_index(model_id="m@1#abc", config_hash="h1").etags == {}


def test_commit_killed_after_record_is_rolled_forward(out_root, monkeypatch):
    store = OutputStore(out_root)
    calls = []
    real_copy = storage.copy

    def copy_once_then_die(src, dst):
        if calls:
            raise KeyboardInterrupt("killed mid-commit")
        calls.append(dst)
        real_copy(src, dst)

    monkeypatch.setattr(storage, "copy", copy_once_then_die)
    with pytest.raises(KeyboardInterrupt):
        store.commit("run1-00000", _parts(["/a.wav", "/b.wav"]))
    monkeypatch.undo()
    # Events are in place, the manifest is not yet: the batch is not done.
    assert _visible(out_root, "events") == 2
    assert _visible(out_root, "recordings") == 0

    assert OutputStore(out_root).recover() == 1
    assert _visible(out_root, "recordings") == 2
    assert _visible(out_root, "events") == 2
    assert OutputStore(out_root).recover() == 0
    assert storage.list_files(storage.join(out_root, "_staging")) == []


def test_commit_checks_schema_before_writing(out_root):
    bad = {"events": {"2026-11-23": pa.table({"recording": ["/a.wav"]})}}
    with pytest.raises(SchemaError, match="events"):
        OutputStore(out_root).commit("run1-00000", bad)
    assert storage.list_files(out_root) == []


def test_done_index_is_per_model_and_config(tmp_path):
    store = OutputStore(str(tmp_path))
    rows = [_recording_row("/a.wav"), _recording_row("/b.wav", config_hash="h2"),
            _recording_row("/c.wav", model="other@1#def"), _recording_row("/d.wav", etag="e2")]
    store.commit("r-0", {"recordings": {"2026-11-23": pa.Table.from_pylist(rows, schema=RECORDINGS)}})
    done = store.done_index(model_id="m@1#abc", config_hash="h1")
    assert done.is_done("/a.wav", "e1")
    assert not done.is_done("/b.wav", "e1")
    assert not done.is_done("/c.wav", "e1")
    assert done.is_done("/d.wav", "e2")
    assert not done.is_done("/d.wav", "e1")  # the content changed


def test_committed_tables_read_by_polars_and_duckdb(tmp_path):
    import duckdb

    store = OutputStore(str(tmp_path))
    store.commit("r-0", _parts(["/a.wav"]))
    store.commit("r-1", _parts(["/b.wav"]))
    df = pl.scan_parquet(f"{tmp_path}/events/**/*.parquet", hive_partitioning=True).collect()
    assert sorted(df["recording"].to_list()) == ["/a.wav", "/b.wav"]
    n = duckdb.sql(
        f"select count(*) from read_parquet('{tmp_path}/recordings/**/*.parquet', hive_partitioning=true) "
        "where date = '2026-11-23'"
    ).fetchall()[0][0]
    assert n == 2

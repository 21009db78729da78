"""Tests for soundbatch.schema: the declared output tables and check_table."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from soundbatch.errors import SchemaError
from soundbatch.schema import EVENTS, RECORDINGS, TABLES, WINDOWS, check_table, empty_table

T0 = dt.datetime(2026, 11, 23, 6, 0, tzinfo=dt.timezone.utc)


def _events(n=3):
    rng = np.random.default_rng(0)
    onset = np.sort(rng.uniform(0, 100, size=n))
    return pa.table(
        {
            "recording": [f"s3://b/rec{i}.wav" for i in range(n)],
            "sensor": ["s1", None, "s3"][:n],
            "class": ["dog", "silence", "unknown"][:n],
            "onset_s": onset,
            "offset_s": onset + 1.0,
            "start_time": [T0, None, T0][:n],
            "end_time": [T0 + dt.timedelta(seconds=1), None, T0][:n],
            "confidence": pa.array([0.9, None, 0.3][:n], pa.float32()),
            "mean_confidence": pa.array([0.8, None, 0.25][:n], pa.float32()),
            "n_windows": pa.array([4, 2, 1][:n], pa.int32()),
            "model": ["urban-sbcnn@1.0.0#0123456789ab"] * n,
            "run_id": ["run-1"] * n,
        },
        schema=EVENTS,
    )


def _recordings():
    return pa.table(
        {
            "recording": ["/data/a.wav", "/data/b.wav"],
            "sensor": ["s1", None],
            "start_time": [T0, None],
            "status": ["ok", "error"],
            "error": [None, "not an audio file"],
            "warning": ["truncated", None],
            "duration_s": [61.5, None],
            "sample_rate": pa.array([44100, None], pa.int32()),
            "channels": pa.array([2, None], pa.int32()),
            "bytes": pa.array([123456, 10], pa.int64()),
            "etag": ["abc", None],
            "n_windows": pa.array([120, 0], pa.int32()),
            "n_events": pa.array([5, 0], pa.int32()),
            "model": ["m@1#abc", "m@1#abc"],
            "run_id": ["r", "r"],
            "config_hash": ["0123456789abcdef"] * 2,
            "processed_at": [T0, T0],
        },
        schema=RECORDINGS,
    )


def _windows():
    return pa.table(
        {
            "recording": ["/data/a.wav"] * 3,
            "t_start_s": [0.0, 0.5, 1.0],
            "t_end_s": [1.0, 1.5, 2.0],
            "rms_dbfs": pa.array([-20.0, -70.0, -30.0], pa.float32()),
            "label": ["dog", "silence", "unknown"],
            "confidence": pa.array([0.9, None, 0.4], pa.float32()),
            "probs": pa.array([[0.9, 0.1], [0.5, 0.5], [0.4, 0.6]], pa.list_(pa.float32())),
            "model": ["m@1#abc"] * 3,
            "run_id": ["r"] * 3,
        },
        schema=WINDOWS,
    )


SAMPLES = {"events": _events, "recordings": _recordings, "windows": _windows}


def _nullable(schema: pa.Schema) -> pa.Schema:
    return pa.schema([f.with_nullable(True) for f in schema])


def _replace_column(table: pa.Table, name: str, array: pa.Array) -> pa.Table:
    i = table.schema.get_field_index(name)
    return table.set_column(i, pa.field(name, array.type), array)


def test_tables_declared():
    assert set(TABLES) == {"events", "recordings", "windows"}
    # units live in names; the partition column is not in the files
    for schema in TABLES.values():
        assert "date" not in schema.names
    assert EVENTS.field("onset_s").type == pa.float64()
    assert EVENTS.field("start_time").type == pa.timestamp("us", tz="UTC")
    assert EVENTS.field("confidence").type == pa.float32()
    assert EVENTS.field("n_windows").type == pa.int32()
    assert RECORDINGS.field("bytes").type == pa.int64()
    assert WINDOWS.field("probs").type == pa.list_(pa.float32())


@pytest.mark.parametrize("name", sorted(TABLES))
def test_check_table_accepts_declared_table(name):
    table = SAMPLES[name]()
    assert check_table(table, name) is table


@pytest.mark.parametrize("name", sorted(TABLES))
def test_check_table_accepts_empty_table(name):
    table = empty_table(name)
    assert table.num_rows == 0
    assert table.schema.equals(TABLES[name])
    assert check_table(table, name) is table


@pytest.mark.parametrize("name", sorted(TABLES))
def test_check_table_parquet_round_trip_keeps_schema(tmp_path, name):
    table = check_table(SAMPLES[name](), name)
    path = tmp_path / f"{name}.parquet"
    pq.write_table(table, path)
    back = pq.read_table(path)
    assert back.schema.equals(TABLES[name]), f"{back.schema}\n!=\n{TABLES[name]}"
    assert [f.nullable for f in back.schema] == [f.nullable for f in TABLES[name]]
    assert back.equals(table)
    assert check_table(back, name) is back


@pytest.mark.parametrize(
    ("name", "column", "array"),
    [
        ("events", "onset_s", pa.array([0.0, 1.0, 2.0], pa.float32())),
        ("events", "n_windows", pa.array([1, 2, 3], pa.int64())),
        ("events", "confidence", pa.array([0.1, 0.2, 0.3], pa.float64())),
        ("events", "start_time", pa.array([T0] * 3, pa.timestamp("ns", tz="UTC"))),
        ("events", "end_time", pa.array([T0.replace(tzinfo=None)] * 3, pa.timestamp("us"))),
        ("events", "class", pa.array([b"a", b"b", b"c"], pa.binary())),
        ("windows", "probs", pa.array([[0.1], [0.2], [0.3]], pa.list_(pa.float64()))),
        ("recordings", "bytes", pa.array([1, 2], pa.int32())),
    ],
)
def test_check_table_wrong_type_names_column(name, column, array):
    table = _replace_column(SAMPLES[name](), column, array)
    with pytest.raises(SchemaError, match=rf"{name}\.{column}: type"):
        check_table(table, name)


@pytest.mark.parametrize("column", ["recording", "class", "n_windows", "run_id"])
def test_check_table_missing_column_names_it(column):
    table = _events()
    table = table.drop_columns([column])
    with pytest.raises(SchemaError, match=rf"events: columns .*'{column}'"):
        check_table(table, "events")


@pytest.mark.parametrize("column", ["date", "extra_col"])
def test_check_table_extra_column_names_it(column):
    table = _events().append_column(column, pa.array(["x"] * 3))
    with pytest.raises(SchemaError, match=rf"events: columns .*'{column}'"):
        check_table(table, "events")


def test_check_table_wrong_column_order_rejected():
    table = _events()
    names = table.column_names
    names[0], names[2] = names[2], names[0]
    with pytest.raises(SchemaError, match="differ from the declared"):
        check_table(table.select(names), "events")


@pytest.mark.parametrize(
    ("name", "column"),
    [
        ("events", "recording"),
        ("events", "class"),
        ("events", "onset_s"),
        ("events", "n_windows"),
        ("recordings", "status"),
        ("recordings", "processed_at"),
        ("windows", "rms_dbfs"),
        ("windows", "label"),
    ],
)
def test_check_table_nulls_in_non_nullable_column_named(name, column):
    table = SAMPLES[name]()
    table = table.cast(_nullable(TABLES[name]))
    col = table.column(column).to_pylist()
    col[0] = None
    table = table.set_column(
        table.schema.get_field_index(column), table.schema.field(column), pa.array(col, table.schema.field(column).type)
    )
    with pytest.raises(SchemaError, match=rf"{name}\.{column}: 1 nulls in a non-nullable column"):
        check_table(table, name)


@pytest.mark.parametrize(("name", "column"), [("events", "sensor"), ("events", "confidence"), ("recordings", "error")])
def test_check_table_nulls_in_nullable_column_accepted(name, column):
    table = SAMPLES[name]()
    assert table.column(column).null_count > 0
    assert check_table(table, name) is table


def test_check_table_hive_partitioned_read_with_polars(tmp_path):
    root = tmp_path / "events"
    folder = root / "date=2026-11-23"
    folder.mkdir(parents=True)
    table = check_table(_events(), "events")
    pq.write_table(table, folder / "x.parquet")
    other = root / "date=2026-11-24"
    other.mkdir()
    pq.write_table(check_table(_events(2), "events"), other / "y.parquet")

    df = pl.scan_parquet(str(root), hive_partitioning=True).collect()
    assert df.columns == [*EVENTS.names, "date"]
    assert df.height == 5
    dates = sorted({str(d) for d in df["date"].to_list()})
    assert dates == ["2026-11-23", "2026-11-24"]
    assert df.schema["onset_s"] == pl.Float64
    assert df.schema["confidence"] == pl.Float32
    assert df.schema["n_windows"] == pl.Int32
    assert df.schema["start_time"] == pl.Datetime("us", "UTC")
    day = df.filter(pl.col("date").cast(pl.String) == "2026-11-23").sort("onset_s")
    assert day["class"].to_list() == table.column("class").to_pylist()

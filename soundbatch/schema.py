"""The Arrow schemas of the output tables, declared once (``shared/specs/outputs.md``).

The ``date`` partition lives in the folder name (``date=YYYY-MM-DD``), not in
the files, so hive-partitioned readers add it without a clash.
"""

from __future__ import annotations

import pyarrow as pa

from soundbatch.errors import SchemaError

SCHEMA_VERSION = "1"

_TS = pa.timestamp("us", tz="UTC")

EVENTS = pa.schema(
    [
        pa.field("recording", pa.string(), nullable=False),
        pa.field("sensor", pa.string()),
        pa.field("class", pa.string(), nullable=False),
        pa.field("onset_s", pa.float64(), nullable=False),
        pa.field("offset_s", pa.float64(), nullable=False),
        pa.field("start_time", _TS),
        pa.field("end_time", _TS),
        # null for `silence`: no class probability applies to a gated window.
        pa.field("confidence", pa.float32()),
        pa.field("mean_confidence", pa.float32()),
        pa.field("n_windows", pa.int32(), nullable=False),
        pa.field("model", pa.string(), nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
    ]
)

RECORDINGS = pa.schema(
    [
        pa.field("recording", pa.string(), nullable=False),
        pa.field("sensor", pa.string()),
        pa.field("start_time", _TS),
        pa.field("status", pa.string(), nullable=False),
        pa.field("error", pa.string()),
        pa.field("warning", pa.string()),
        pa.field("duration_s", pa.float64()),
        pa.field("sample_rate", pa.int32()),
        pa.field("channels", pa.int32()),
        pa.field("bytes", pa.int64(), nullable=False),
        pa.field("etag", pa.string()),
        pa.field("n_windows", pa.int32(), nullable=False),
        pa.field("n_events", pa.int32(), nullable=False),
        pa.field("model", pa.string(), nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("config_hash", pa.string(), nullable=False),
        pa.field("processed_at", _TS, nullable=False),
    ]
)

WINDOWS = pa.schema(
    [
        pa.field("recording", pa.string(), nullable=False),
        pa.field("t_start_s", pa.float64(), nullable=False),
        pa.field("t_end_s", pa.float64(), nullable=False),
        pa.field("rms_dbfs", pa.float32(), nullable=False),
        pa.field("label", pa.string(), nullable=False),
        pa.field("confidence", pa.float32()),
        pa.field("probs", pa.list_(pa.float32())),
        pa.field("model", pa.string(), nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
    ]
)

TABLES: dict[str, pa.Schema] = {"events": EVENTS, "recordings": RECORDINGS, "windows": WINDOWS}


def check_table(table: pa.Table, name: str) -> pa.Table:
    """Return ``table`` if it has exactly the declared schema of output table ``name``.

    Column names, order and types must match; non-nullable columns must hold no nulls.
    """
    schema = TABLES[name]
    if table.schema.names != schema.names:
        missing = [c for c in schema.names if c not in table.schema.names]
        extra = [c for c in table.schema.names if c not in schema.names]
        raise SchemaError(
            f"{name}: columns differ from the declared schema: missing {missing}, unexpected {extra}"
            + ("" if missing or extra else f", order {table.schema.names} instead of {schema.names}")
        )
    for field in schema:
        col = table.column(field.name)
        if not col.type.equals(field.type):
            raise SchemaError(f"{name}.{field.name}: type {col.type} differs from the declared {field.type}")
        if not field.nullable and col.null_count:
            raise SchemaError(f"{name}.{field.name}: {col.null_count} nulls in a non-nullable column")
    return table


def empty_table(name: str) -> pa.Table:
    return TABLES[name].empty_table()

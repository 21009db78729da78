"""A first look at a sweep's output with polars: what an analyst's queries look like."""

from __future__ import annotations

import polars as pl

from soundbatch import storage


def storage_options(root: str) -> dict[str, str] | None:
    """polars' S3 options from the standard AWS environment (endpoint for moto/MinIO)."""
    if not root.startswith("s3://"):
        return None
    opts = {}
    endpoint = storage.endpoint_url()
    if endpoint:
        opts["aws_endpoint_url"] = endpoint
        if endpoint.startswith("http://"):
            opts["aws_allow_http"] = "true"
    region = storage.region()
    if region:
        opts["aws_region"] = region
    return opts


def scan(root: str, table: str) -> pl.LazyFrame:
    """``OUT/<table>/**/*.parquet`` as a lazy frame with the hive ``date`` column."""
    return pl.scan_parquet(f"{root.rstrip('/')}/{table}/**/*.parquet", hive_partitioning=True,
                           storage_options=storage_options(root))


def report(root: str) -> str:
    """Counts per status, events per class and sensor, and the errors, as text."""
    pl.Config.set_tbl_rows(50)
    recordings = scan(root, "recordings").collect()
    events = scan(root, "events").collect()
    parts = [
        "recordings by status:",
        str(recordings.group_by("status").agg(pl.len().alias("n"),
                                              (pl.col("duration_s").sum() / 3600).alias("hours"))),
        "events per class and sensor:",
        str(events.group_by("class", "sensor").agg(pl.len().alias("events"),
                                                   (pl.col("offset_s") - pl.col("onset_s")).sum().alias("seconds"))
            .sort("class", "sensor")),
    ]
    errors = recordings.filter(pl.col("status") == "error").select("recording", "error")
    if errors.height:
        parts += ["recordings in error:", str(errors)]
    return "\n".join(parts)

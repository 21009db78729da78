"""Writing the output tables so that readers see each recording exactly once.

Layout (``shared/specs/outputs.md``)::

    OUT/events/date=D/<batch>.parquet       visible to readers
    OUT/recordings/date=D/<batch>.parquet
    OUT/windows/date=D/<batch>.parquet
    OUT/runs/<run_id>.json
    OUT/_staging/<batch>/...                 never matched by OUT/<table>/**
    OUT/_commits/<batch>.json                the commit decision

A batch of finished recordings is committed in four steps:

1. every file is written under ``_staging/`` (invisible to readers);
2. the commit record ``_commits/<batch>.json`` is written (one atomic PUT):
   from here on the batch *will* become visible;
3. each staged file is copied to its final name (each copy is atomic:
   ``os.replace`` locally, one PUT/COPY on S3), events and windows before
   recordings, so a ``recordings`` row is never visible without its events
   once the batch is complete;
4. staged files and the record are deleted.

A run killed before step 2 leaves only staging debris; one killed after it is
rolled forward by :meth:`OutputStore.recover` at the start of the next run. A
recording is done when it has a ``recordings`` row for this model and
``config_hash`` with the same etag, so a rerun skips it without decoding.
"""

from __future__ import annotations

import io
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from soundbatch import storage
from soundbatch.errors import StorageError
from soundbatch.schema import check_table

log = logging.getLogger(__name__)

# Order of the final copies: the manifest row last, so it marks completion.
TABLE_ORDER = ("events", "windows", "recordings")


@dataclass(frozen=True)
class DoneIndex:
    """Recordings already done for one (model, config_hash): uri -> etags seen."""

    etags: dict[str, set[str | None]]

    def is_done(self, uri: str, etag: str | None) -> bool:
        return etag in self.etags.get(uri, ())

    def __len__(self) -> int:
        return len(self.etags)


class OutputStore:
    """The output root of a sweep: commits batches, recovers, answers "done yet?"."""

    def __init__(self, root: str):
        self.root = root.rstrip("/")

    def uri(self, *parts: str) -> str:
        return storage.join(self.root, *parts)

    # --- commit protocol --------------------------------------------------

    def commit(self, batch_id: str, parts: dict[str, dict[str, pa.Table]]) -> list[str]:
        """Commit one batch: ``parts[table][date] = rows``. Returns the final URIs."""
        files = []
        for table in TABLE_ORDER:
            for date, rows in sorted(parts.get(table, {}).items()):
                if rows.num_rows == 0:
                    continue
                check_table(rows, table)
                rel = f"{table}/date={date}/{batch_id}.parquet"
                staged = self.uri("_staging", batch_id, rel)
                storage.write_bytes(staged, _parquet_bytes(rows))
                files.append({"staged": staged, "final": self.uri(rel)})
        record = {"batch_id": batch_id, "files": files}
        storage.write_bytes(self.uri("_commits", f"{batch_id}.json"), json.dumps(record).encode())
        self._apply(record)
        return [f["final"] for f in files]

    def recover(self) -> int:
        """Roll forward every batch whose commit record exists; returns how many."""
        records = storage.list_files(self.uri("_commits"), suffix=".json")
        for entry in records:
            record = json.loads(storage.read_bytes(entry.uri))
            log.warning("rolling forward batch %s left by an interrupted run", record["batch_id"])
            self._apply(record)
        return len(records)

    def _apply(self, record: dict[str, Any]) -> None:
        for f in record["files"]:
            if not storage.exists(f["final"]):
                if not storage.exists(f["staged"]):
                    raise StorageError(
                        f"commit {record['batch_id']}: neither {f['staged']} nor {f['final']} exists; "
                        "the output root was changed by hand"
                    )
                storage.copy(f["staged"], f["final"])
        for f in record["files"]:
            if storage.exists(f["staged"]):
                storage.delete(f["staged"])
        storage.delete(self.uri("_commits", f"{record['batch_id']}.json"))

    # --- resume -----------------------------------------------------------

    def done_index(self, *, model_id: str, config_hash: str) -> DoneIndex:
        """Recordings that already have a ``recordings`` row for this model and config."""
        etags: dict[str, set[str | None]] = {}
        for entry in storage.list_files(self.uri("recordings"), suffix=".parquet"):
            t = pq.read_table(
                io.BytesIO(storage.read_bytes(entry.uri)),
                columns=["recording", "etag", "model", "config_hash"],
            )
            for rec, etag, model, ch in zip(*(t.column(i).to_pylist() for i in range(4))):
                if model == model_id and ch == config_hash:
                    etags.setdefault(rec, set()).add(etag)
        return DoneIndex(etags)

    # --- run records ------------------------------------------------------

    def write_run_record(self, run_id: str, record: dict[str, Any]) -> str:
        uri = self.uri("runs", f"{run_id}.json")
        storage.write_bytes(uri, json.dumps(record, indent=2, default=str).encode())
        return uri


class CommitBatcher:
    """Buffers finished recordings and commits them in batches (by count or by time)."""

    def __init__(self, store: OutputStore, run_id: str, *, max_recordings: int, max_interval_s: float):
        self.store, self.run_id = store, run_id
        self.max_recordings, self.max_interval_s = max_recordings, max_interval_s
        self.buffer: list = []
        self.seq = 0
        self.last = time.monotonic()

    def add(self, finished) -> None:
        """Add a :class:`soundbatch.assemble.FinishedRecording`; commit when the batch is full or old."""
        self.buffer.append(finished)
        if len(self.buffer) >= self.max_recordings or time.monotonic() - self.last >= self.max_interval_s:
            self.flush()

    def flush(self) -> None:
        if not self.buffer:
            return
        parts: dict[str, dict[str, list[pa.Table]]] = {}
        for f in self.buffer:
            for name, t in f.tables.items():
                parts.setdefault(name, {}).setdefault(f.date, []).append(t)
        merged = {name: {d: pa.concat_tables(ts) for d, ts in by_date.items()} for name, by_date in parts.items()}
        self.store.commit(f"{self.run_id}-{self.seq:05d}", merged)
        self.seq += 1
        self.buffer.clear()
        self.last = time.monotonic()


def _parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()

"""Driver side: put a recording's segments back together and make its table rows.

Segments arrive in any order; a recording is finished when all of them are in.
What the driver holds per recording in flight is small (rms and probabilities
per window: about 7 MB for a day of audio with 10 classes), so memory stays
bounded by the recordings in flight, not by the archive.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from soundbatch import naming
from soundbatch.card import ModelCard
from soundbatch.events import make_events
from soundbatch.gates import apply_gates
from soundbatch.grid import WindowGrid
from soundbatch.schema import EVENTS, RECORDINGS, WINDOWS


@dataclass(frozen=True)
class RunContext:
    """Everything about a run that the rows of a recording depend on."""

    card: ModelCard
    model_id: str
    run_id: str
    config_hash: str
    rms_gate_dbfs: float
    thresholds: list[float]
    min_event_s: float
    max_gap_s: float
    write_windows: bool
    path_pattern: naming.PathPattern | None
    run_date: dt.date


@dataclass
class FinishedRecording:
    uri: str
    date: str
    tables: dict[str, pa.Table]
    status: str
    duration_s: float
    event_counts: Counter = field(default_factory=Counter)


@dataclass
class _Pending:
    n_segments: int
    parts: dict[int, dict] = field(default_factory=dict)


class RecordingAssembler:
    """Collects segment rows; returns a :class:`FinishedRecording` when one completes."""

    def __init__(self, ctx: RunContext):
        self.ctx = ctx
        self.grid = WindowGrid.from_card(ctx.card)
        self.pending: dict[str, _Pending] = {}
        self.finished: set[str] = set()

    def add(self, row: dict) -> FinishedRecording | None:
        uri = row["recording"]
        p = self.pending.setdefault(uri, _Pending(int(row["n_segments"])))
        p.parts[int(row["seg"])] = row
        if len(p.parts) < p.n_segments:
            return None
        del self.pending[uri]
        self.finished.add(uri)
        return finish_recording(self.ctx, self.grid, [p.parts[i] for i in range(p.n_segments)])

    def abandon(self, segments: pa.Table, *, reason: str) -> list[FinishedRecording]:
        """Error rows for every planned recording that did not finish (lost segments)."""
        firsts = segments.filter(pc.equal(segments.column("seg"), 0)).to_pylist()
        lost = []
        for row in firsts:
            if row["recording"] in self.finished:
                continue
            pending = self.pending.get(row["recording"])
            missing = (sorted(set(range(pending.n_segments)) - set(pending.parts)) if pending
                       else list(range(row["n_segments"])))
            detail = f"{reason} (segments {missing[:5]}{'...' if len(missing) > 5 else ''} of {row['n_segments']})"
            lost.append(finish_recording(self.ctx, self.grid, [dict(row, error=row["error"] or detail)]))
            self.finished.add(row["recording"])
        self.pending.clear()
        return lost


def finish_recording(ctx: RunContext, grid: WindowGrid, parts: list[dict]) -> FinishedRecording:
    """Rows of the output tables for one recording, from its segments in order."""
    first = parts[0]
    uri = first["recording"]
    name = naming.parse_recording_name(uri, ctx.path_pattern)
    start = name.start_time
    date = (start.date() if start else ctx.run_date).isoformat()
    errors = [p["error"] for p in parts if p["error"]]
    frames, sr = int(first["frames"]), int(first["sample_rate"])
    base = dict(
        recording=uri, sensor=name.sensor, start_time=start, bytes=int(first["bytes"]),
        # Ray turns an all-null string column into float NaN: keep only real etags.
        etag=first["etag"] if isinstance(first["etag"], str) else None, model=ctx.model_id, run_id=ctx.run_id, config_hash=ctx.config_hash,
        processed_at=dt.datetime.now(dt.timezone.utc),
        sample_rate=sr if sr > 0 else None,
        channels=int(first["channels"]) if int(first["channels"]) > 0 else None,
    )
    if errors:
        row = dict(base, status="error", error=errors[0], warning=None,
                   duration_s=frames / sr if frames >= 0 and sr > 0 else None, n_windows=0, n_events=0)
        return FinishedRecording(uri, date, {"recordings": _table([row], RECORDINGS)}, "error", 0.0)

    n_classes = len(ctx.card.classes)
    probs = np.concatenate([np.frombuffer(p["probs"], np.float32) for p in parts]).reshape(-1, n_classes)
    rms = np.concatenate([np.frombuffer(p["rms_dbfs"], np.float32) for p in parts])
    decoded = sum(int(p["frames_decoded"]) for p in parts)
    warnings = _unique(w for p in parts for w in p["warning"].split("; ") if w)
    duration_s = frames / sr
    if decoded < frames:
        # Fewer frames decoded than the header gave (an MP3's length is only an
        # estimate). Keep what decoded, and only the windows that start inside it.
        warnings.insert(0, f"decoded {decoded} frames where the header gives {frames} "
                           f"({(frames - decoded) / sr:.2f} s less)")
        duration_s = decoded / sr
        keep = grid.n_windows(math.ceil(decoded * ctx.card.sample_rate / sr))
        probs, rms = probs[:keep], rms[:keep]

    labels = apply_gates(probs, rms, classes=ctx.card.classes, kind=ctx.card.output.kind,
                         rms_gate_dbfs=ctx.rms_gate_dbfs, thresholds=ctx.thresholds)
    events = make_events(labels, probs, hop_s=ctx.card.hop_s, window_s=ctx.card.window_s,
                         duration_s=duration_s,
                         single_label=ctx.card.output.kind == "softmax",
                         background=frozenset(ctx.card.background_classes),
                         min_event_s=ctx.min_event_s, max_gap_s=ctx.max_gap_s)
    event_rows = [
        dict(recording=uri, sensor=name.sensor, **{"class": e.label}, onset_s=e.onset_s, offset_s=e.offset_s,
             start_time=start + dt.timedelta(seconds=e.onset_s) if start else None,
             end_time=start + dt.timedelta(seconds=e.offset_s) if start else None,
             confidence=_nan_to_none(e.confidence), mean_confidence=_nan_to_none(e.mean_confidence),
             n_windows=e.n_windows, model=ctx.model_id, run_id=ctx.run_id)
        for e in events
    ]
    row = dict(base, status="ok", error=None, warning="; ".join(warnings) or None, duration_s=duration_s,
               n_windows=len(rms), n_events=len(event_rows))
    tables = {"recordings": _table([row], RECORDINGS), "events": _table(event_rows, EVENTS)}
    if ctx.write_windows:
        tables["windows"] = windows_table(ctx, grid, uri, probs, rms, labels)
    return FinishedRecording(uri, date, tables, "ok", duration_s, Counter(e.label for e in events))


def windows_table(ctx: RunContext, grid: WindowGrid, uri: str, probs: np.ndarray, rms: np.ndarray, labels) -> pa.Table:
    """One row per window, built column-wise (a day of audio is 170 k rows)."""
    n = len(rms)
    t0, t1 = grid.window_times(0, n)
    conf = labels.confidence
    flat = pa.array(probs.reshape(-1), type=pa.float32())
    offsets = pa.array(np.arange(0, (n + 1) * probs.shape[1], probs.shape[1], dtype=np.int32))
    columns = {
        "recording": pa.array([uri] * n, pa.string()),
        "t_start_s": pa.array(t0, pa.float64()),
        "t_end_s": pa.array(t1, pa.float64()),
        "rms_dbfs": pa.array(rms, pa.float32()),
        "label": pa.array(labels.names.tolist(), pa.string()),
        "confidence": pa.array(conf, pa.float32(), mask=np.isnan(conf)),
        "probs": pa.ListArray.from_arrays(offsets, flat),
        "model": pa.array([ctx.model_id] * n, pa.string()),
        "run_id": pa.array([ctx.run_id] * n, pa.string()),
    }
    return pa.table(columns, schema=WINDOWS)


def _table(rows: list[dict], schema: pa.Schema) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=schema)


def _nan_to_none(x: float) -> float | None:
    return None if x != x else x


def _unique(items) -> list[str]:
    return list(dict.fromkeys(items))


"""The sweep: one function that builds the Ray Data chain from a config and runs it.

``jobs/sweep.py`` and the CLI only parse arguments and call :func:`run_sweep`.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import platform
import secrets
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pyarrow as pa

from soundbatch import naming, storage
from soundbatch.assemble import FinishedRecording, RecordingAssembler, RunContext
from soundbatch.card import ModelCard, card_to_json
from soundbatch.config import SweepConfig
from soundbatch.errors import ConfigError
from soundbatch.model import LoadedModel, load_model
from soundbatch.outputs import OutputStore
from soundbatch.stages import SEGMENT_SCHEMA, SegmentClassifier, SegmentPipeline, decode_batch, plan_segments

log = logging.getLogger(__name__)

# Native thread pools (OpenBLAS, OpenMP) in every worker: one thread each, so
# Ray's one-CPU-per-task accounting matches what the process really uses.
WORKER_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
PROBE_THREADS = 16


@dataclass
class Progress:
    """What a progress display needs; passed to the ``on_progress`` callback."""

    total: int
    done: int = 0
    errors: int = 0
    audio_s: float = 0.0
    started: float = field(default_factory=time.monotonic)


@dataclass
class SweepSummary:
    run_id: str
    out: str
    listed: int
    skipped: int
    ok: int
    errors: int
    audio_s: float
    wall_s: float
    events_per_class: dict[str, int]
    model_id: str
    config_hash: str
    error_examples: list[tuple[str, str]]

    @property
    def x_realtime(self) -> float:
        return self.audio_s / self.wall_s if self.wall_s > 0 else 0.0


def run_sweep(config: SweepConfig, *, on_progress: Callable[[Progress], None] | None = None) -> SweepSummary:
    """Run one sweep: list, skip what is done, decode, classify, gate, commit.

    The model card is checked against its graph and the settings are resolved
    before any audio is read.
    """
    t_start = time.monotonic()
    started_at = dt.datetime.now(dt.timezone.utc)
    model = load_model(config.model)
    ctx = _run_context(config, model, started_at)
    store = OutputStore(config.out)
    store.recover()

    entries = storage.list_inputs(list(config.inputs), extensions=config.extensions)
    done = store.done_index(model_id=model.model_id, config_hash=ctx.config_hash)
    todo = [e for e in entries if not done.is_done(e.uri, e.etag)]
    log.info("listed %d recordings, %d already done, %d to process", len(entries), len(entries) - len(todo), len(todo))
    record = _run_record(config, model, ctx, started_at, listed=len(entries), todo=len(todo))
    store.write_run_record(ctx.run_id, record)

    progress = Progress(total=len(todo))
    events = Counter()
    error_examples: list[tuple[str, str]] = []
    ok = 0
    if todo:
        batcher = _CommitBatcher(store, ctx.run_id, config.commit_recordings, config.commit_interval_s)
        assembler = RecordingAssembler(ctx)
        for row in _segment_results(config, model, todo):
            finished = assembler.add(row)
            if finished is None:
                continue
            batcher.add(finished)
            progress.done += 1
            if finished.status == "ok":
                ok += 1
                progress.audio_s += finished.duration_s
                events.update(finished.event_counts)
            else:
                progress.errors += 1
                if len(error_examples) < 20:
                    error = finished.tables["recordings"].column("error")[0].as_py()
                    error_examples.append((finished.uri, error))
            if on_progress:
                on_progress(progress)
        batcher.flush()
        if assembler.pending:
            raise RuntimeError(f"{len(assembler.pending)} recordings never received all their segments")

    wall = time.monotonic() - t_start
    summary = SweepSummary(
        run_id=ctx.run_id, out=config.out, listed=len(entries), skipped=len(entries) - len(todo),
        ok=ok, errors=progress.errors, audio_s=progress.audio_s, wall_s=wall,
        events_per_class=dict(sorted(events.items())), model_id=model.model_id,
        config_hash=ctx.config_hash, error_examples=error_examples,
    )
    record.update(status="finished", finished_at=dt.datetime.now(dt.timezone.utc).isoformat(),
                  summary={k: v for k, v in summary.__dict__.items() if k != "error_examples"},
                  x_realtime=summary.x_realtime)
    store.write_run_record(ctx.run_id, record)
    return summary


def _run_context(config: SweepConfig, model: LoadedModel, started_at: dt.datetime) -> RunContext:
    card = model.card
    rms_gate = config.rms_gate_dbfs if config.rms_gate_dbfs is not None else card.defaults.rms_gate_dbfs
    thresholds = card.thresholds(config.ood_threshold)
    pattern = naming.PathPattern(config.path_pattern) if config.path_pattern else None
    return RunContext(
        card=card, model_id=model.model_id,
        run_id=started_at.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3),
        config_hash=config.results_hash(model_sha256=model.sha256, rms_gate_dbfs=rms_gate, thresholds=thresholds),
        rms_gate_dbfs=rms_gate, thresholds=thresholds, min_event_s=config.min_event_s,
        max_gap_s=config.max_gap_s, write_windows=config.write_windows, path_pattern=pattern,
        run_date=started_at.date(),
    )


def _segment_results(config: SweepConfig, model: LoadedModel, todo: list[storage.FileEntry]):
    """Run the Ray Data chain and yield one dict per finished segment."""
    _ensure_ray(config)
    segments = plan_all_segments(todo, card=model.card, segment_s=config.segment_s)
    ds = build_dataset(config, model, segments)
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        keys = list(batch)
        for i in range(len(batch["recording"])):
            yield {k: batch[k][i] for k in keys}


def plan_all_segments(todo: list[storage.FileEntry], *, card: ModelCard, segment_s: float) -> pa.Table:
    """Read every recording's header (threads: it is I/O) and cut it into segments.

    On the driver rather than in Ray tasks: a header is one small read, and tiny
    tasks cost more in worker start-up than they save.
    """
    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=PROBE_THREADS) as pool:
        plans = pool.map(lambda e: plan_segments(e.uri, e.size, e.etag, card=card, segment_s=segment_s), todo)
        rows = [row for plan in plans for row in plan]
    log.info("probed %d recordings into %d segments in %.1f s", len(todo), len(rows), time.monotonic() - t0)
    return pa.Table.from_pylist(rows, schema=SEGMENT_SCHEMA)


def build_dataset(config: SweepConfig, model: LoadedModel, segments: pa.Table):
    """The Ray Data chain: segments -> log-mel windows -> probabilities (lazy)."""
    import ray

    card_json = card_to_json(model.card)
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    gpus = int(ray.cluster_resources().get("GPU", 0))
    if config.device == "cuda" and gpus == 0:
        raise ConfigError("device='cuda' but the Ray cluster has no GPU; use device='cpu'")
    max_actors = config.num_actors or gpus
    # Small blocks spread the segments of one long recording over workers; a cap
    # keeps the number of blocks (objects) sane for archives of millions of segments.
    per_block = max(1, min(32, math.ceil(segments.num_rows / 10_000)))
    ds = ray.data.from_arrow([segments.slice(i, per_block) for i in range(0, segments.num_rows, per_block)])
    model_kwargs = {"model": model, "batch_windows": config.batch_windows}
    if config.device == "cpu":
        # One actor per CPU decodes and classifies its segments. There are no other
        # tasks in the chain (the driver probes and writes), so the pool may take
        # every CPU without starving anything.
        n = config.num_actors or cpus
        # Start the whole pool at once (growing it from one actor costs seconds),
        # but let it shrink to one: a fixed-size pool hangs when a node dies.
        return ds.map_batches(
            SegmentPipeline, fn_constructor_kwargs=model_kwargs, batch_size=1, num_cpus=1,
            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=n, initial_size=n),
        )
    # GPUs: CPU tasks decode, one actor per GPU infers. An explicit task-pool size
    # that differs from the actor pool's keeps Ray from fusing decode into the
    # actors, where it would run serially (stack notes).
    ds = ds.map_batches(decode_batch, fn_kwargs={"card_json": card_json}, batch_size=1,
                        compute=ray.data.TaskPoolStrategy(size=cpus), num_cpus=1)
    return ds.map_batches(
        SegmentClassifier, fn_constructor_kwargs={**model_kwargs, "device": "cuda"}, batch_size=1,
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=max_actors), num_gpus=1, num_cpus=1,
    )


def _ensure_ray(config: SweepConfig) -> None:
    import ray

    if ray.is_initialized():
        return
    address = config.address or os.environ.get("RAY_ADDRESS")
    kwargs: dict = {"log_to_driver": False}
    if not address:
        # A local Ray's workers inherit this process's environment: cheaper than a
        # runtime_env. On a cluster, `ray start` sets it (ray_cluster.yaml).
        for key, value in WORKER_ENV.items():
            os.environ.setdefault(key, value)
        address = "local"
        kwargs.update(include_dashboard=False, num_cpus=config.num_cpus)
        if config.object_store_mb:
            kwargs["object_store_memory"] = config.object_store_mb * 2**20
    t0 = time.monotonic()
    ray.init(address=address, **kwargs)
    log.info("Ray ready (%s) in %.1f s", address, time.monotonic() - t0)
    ray.data.DataContext.get_current().enable_progress_bars = False


class _CommitBatcher:
    """Buffers finished recordings and commits them in batches (by count or time)."""

    def __init__(self, store: OutputStore, run_id: str, max_recordings: int, max_interval_s: float):
        self.store, self.run_id = store, run_id
        self.max_recordings, self.max_interval_s = max_recordings, max_interval_s
        self.buffer: list[FinishedRecording] = []
        self.seq = 0
        self.last = time.monotonic()

    def add(self, finished: FinishedRecording) -> None:
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


def _run_record(config: SweepConfig, model: LoadedModel, ctx: RunContext, started_at: dt.datetime,
                *, listed: int, todo: int) -> dict:
    import soundbatch

    return {
        "run_id": ctx.run_id,
        "status": "running",
        "started_at": started_at.isoformat(),
        "host": platform.node(),
        "soundbatch_version": soundbatch.__version__,
        "config": config.model_dump(mode="json"),
        "config_hash": ctx.config_hash,
        "effective": {"rms_gate_dbfs": ctx.rms_gate_dbfs, "thresholds": ctx.thresholds},
        "model": {"id": model.model_id, "uri": model.uri, "sha256": model.sha256,
                  "card": model.card.model_dump(mode="json")},
        "listed": listed,
        "to_process": todo,
    }

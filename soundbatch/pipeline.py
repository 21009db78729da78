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
from soundbatch.outputs import CommitBatcher, OutputStore
from soundbatch.stages import SEGMENT_SCHEMA, SegmentClassifier, SegmentPipeline, decode_batch, plan_segments

log = logging.getLogger(__name__)

# Native thread pools (OpenBLAS, OpenMP) in every worker: one thread each, so
# Ray's one-CPU-per-task accounting matches what the process really uses.
WORKER_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
PROBE_THREADS = 16
MAX_CLUSTER_ACTORS = 256  # ceiling of a cluster's actor pool when --num-actors is not given


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
    storage.check_access(config.out, write=True)
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
    try:
        progress, events, error_examples = _process(config, model, ctx, store, todo, on_progress)
    except BaseException as exc:
        record.update(status="failed", failed_at=dt.datetime.now(dt.timezone.utc).isoformat(),
                      error=f"{type(exc).__name__}: {exc}")
        store.write_run_record(ctx.run_id, record)
        raise

    wall = time.monotonic() - t_start
    summary = SweepSummary(
        run_id=ctx.run_id, out=config.out, listed=len(entries), skipped=len(entries) - len(todo),
        ok=progress.done - progress.errors, errors=progress.errors, audio_s=progress.audio_s, wall_s=wall,
        events_per_class=dict(sorted(events.items())), model_id=model.model_id,
        config_hash=ctx.config_hash, error_examples=error_examples,
    )
    record.update(status="finished", finished_at=dt.datetime.now(dt.timezone.utc).isoformat(),
                  summary={k: v for k, v in summary.__dict__.items() if k != "error_examples"},
                  x_realtime=summary.x_realtime)
    store.write_run_record(ctx.run_id, record)
    return summary


def _process(config: SweepConfig, model: LoadedModel, ctx: RunContext, store: OutputStore,
             todo: list[storage.FileEntry], on_progress: Callable[[Progress], None] | None):
    """Decode, classify and commit ``todo``; every recording ends as an ok or error row."""
    progress = Progress(total=len(todo))
    events: Counter = Counter()
    error_examples: list[tuple[str, str]] = []
    if not todo:
        return progress, events, error_examples
    batcher = CommitBatcher(store, ctx.run_id, max_recordings=config.commit_recordings,
                            max_interval_s=config.commit_interval_s)
    assembler = RecordingAssembler(ctx)
    segments = plan_all_segments(todo, card=model.card, segment_s=config.segment_s)
    _ensure_ray(config)

    def finish(finished: FinishedRecording) -> None:
        batcher.add(finished)
        progress.done += 1
        if finished.status == "ok":
            progress.audio_s += finished.duration_s
            events.update(finished.event_counts)
        else:
            progress.errors += 1
            if len(error_examples) < 20:
                error_examples.append((finished.uri, finished.tables["recordings"].column("error")[0].as_py()))
        if on_progress:
            on_progress(progress)

    for batch in build_dataset(config, model, segments).iter_batches(batch_size=None, batch_format="numpy"):
        for i in range(len(batch["recording"])):
            finished = assembler.add({k: v[i] for k, v in batch.items()})
            if finished is not None:
                finish(finished)
    # Segments that never came back (a worker died on them, a block was dropped):
    # their recordings end as error rows, never silently missing.
    for finished in assembler.abandon(segments, reason="processing failed: a worker died or its block was "
                                                       "dropped (see the Ray logs); run again to retry"):
        finish(finished)
    batcher.flush()
    return progress, events, error_examples


def _run_context(config: SweepConfig, model: LoadedModel, started_at: dt.datetime) -> RunContext:
    card = model.card
    rms_gate = config.rms_gate_dbfs if config.rms_gate_dbfs is not None else card.defaults.rms_gate_dbfs
    thresholds = card.thresholds(config.ood_threshold)
    pattern = naming.PathPattern(config.path_pattern) if config.path_pattern else None
    return RunContext(
        card=card, model_id=model.model_id,
        run_id=started_at.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3),
        config_hash=config.results_hash(model_sha256=model.sha256, card_json=card_to_json(card),
                                         rms_gate_dbfs=rms_gate, thresholds=thresholds),
        rms_gate_dbfs=rms_gate, thresholds=thresholds, min_event_s=config.min_event_s,
        max_gap_s=config.max_gap_s, write_windows=config.write_windows, path_pattern=pattern,
        run_date=started_at.date(),
    )


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
    cpus = max(1, int(ray.cluster_resources().get("CPU", 0)))
    gpus = int(ray.cluster_resources().get("GPU", 0))
    # On a cluster that autoscales (workers from 0), today's resources say little:
    # let the pool grow, and Ray Data asks the autoscaler for the nodes.
    on_cluster = bool(config.address or os.environ.get("RAY_ADDRESS"))
    if config.device == "cuda" and gpus == 0 and not on_cluster:
        raise ConfigError("device='cuda' but this machine's Ray has no GPU; use device='cpu'")
    # Small blocks spread the segments of one long recording over workers; a cap
    # keeps the number of blocks (objects) sane for archives of millions of segments.
    per_block = max(1, min(32, math.ceil(segments.num_rows / 10_000)))
    ds = ray.data.from_arrow([segments.slice(i, per_block) for i in range(0, segments.num_rows, per_block)])
    model_kwargs = {"model": model, "batch_windows": config.batch_windows}
    if config.device == "cpu":
        # One actor per CPU decodes and classifies its segments. There are no other
        # tasks in the chain (the driver probes and writes), so the pool may take
        # every CPU without starving anything.
        n = config.num_actors or (max(cpus, MAX_CLUSTER_ACTORS) if on_cluster else cpus)
        # Start what fits at once (growing from one actor costs seconds), let it
        # shrink to one: a fixed-size pool hangs when a node dies (stack notes).
        return ds.map_batches(
            SegmentPipeline, fn_constructor_kwargs=model_kwargs, batch_size=1, num_cpus=1,
            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=n, initial_size=min(n, cpus)),
        )
    # GPUs: CPU tasks decode, one actor per GPU infers. An explicit task-pool size
    # that differs from the actor pool's keeps Ray from fusing decode into the
    # actors, where it would run serially (stack notes).
    max_actors = config.num_actors or max(gpus, 1)
    ds = ds.map_batches(decode_batch, fn_kwargs={"card_json": card_json}, batch_size=1,
                        compute=ray.data.TaskPoolStrategy(size=max(cpus, max_actors + 1)), num_cpus=1)
    # Several segments per call keep a GPU busy (one segment is ~600 windows).
    return ds.map_batches(
        SegmentClassifier, fn_constructor_kwargs={**model_kwargs, "device": "cuda"}, batch_size=4,
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
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    # A block that fails for good (its worker keeps dying) must not end the
    # sweep: its recordings become error rows (RecordingAssembler.abandon).
    ctx.max_errored_blocks = -1


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

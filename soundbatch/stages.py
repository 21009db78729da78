"""The units of work: plan a recording's segments, decode them, classify them.

``plan_segments`` runs on the driver (one header read per recording). The
others are what the Ray Data pipeline maps: each takes and returns
``dict[str, np.ndarray]`` batches and can be called on a plain batch in a test
before Ray ever sees it. Rows travel as segments of a
recording: ``recording, seg, n_segments, w0, w1`` plus the file's facts.
Features and probabilities cross stage boundaries as float32 bytes
(``n_windows`` rows each), which Arrow carries as binary without surprises.

A failure on one recording becomes its ``error`` string; it never raises, so
one bad file cannot stop a sweep.
"""

from __future__ import annotations

import functools
import logging
import math

import numpy as np
import pyarrow as pa

from soundbatch import decode, storage
from soundbatch.card import ModelCard, card_to_json, parse_card
from soundbatch.grid import WindowGrid
from soundbatch.model import LoadedModel
from soundbatch.predictor import OnnxClassifier

log = logging.getLogger(__name__)

PROBE_BUFFER = 64 * 1024
MAX_SEGMENT_SAMPLES = 32 * 2**20  # source samples (all channels) decoded at once: 128 MB of float32

# Columns every segment row carries from the probe on.
SEGMENT_SCHEMA = pa.schema(
    [("recording", pa.string()), ("bytes", pa.int64()), ("etag", pa.string())]
    + [(c, pa.int64()) for c in ("seg", "n_segments", "w0", "w1", "n_windows_total", "frames",
                                  "sample_rate", "channels")]
    + [("error", pa.string()), ("warning", pa.string())]
)
SEGMENT_COLUMNS = tuple(SEGMENT_SCHEMA.names)


@functools.lru_cache(maxsize=4)
def _card(card_json: str) -> tuple[ModelCard, WindowGrid]:
    card = parse_card(card_json)
    return card, WindowGrid.from_card(card)


def describe_failure(exc: BaseException) -> str:
    """A one-line reason for a recordings row, keeping the cause's words."""
    text = str(exc).strip() or type(exc).__name__
    cause = exc.__cause__
    if cause is not None and str(cause) and str(cause) not in text:
        text = f"{text} ({cause})"
    return text.replace("\n", " ")


def plan_segments(
    uri: str, size: int, etag: str | None, *, card: ModelCard, segment_s: float
) -> list[dict]:
    """One recording -> its segment rows. Reads the file's header, nothing more.

    A recording that cannot be opened gives one row with ``error`` set and no windows.
    """
    grid = WindowGrid.from_card(card)
    facts = dict(frames=-1, sample_rate=-1, channels=-1, error="", warning="")
    spans = [(0, 0)]
    total = 0
    try:
        # A small buffer: a header is a few KiB, and on S3 each refill is a GET.
        with storage.open_input(uri, buffer_size=PROBE_BUFFER) as f:
            info = decode.probe(f)
            declared = decode.wav_declared_frames(f, info)
        facts.update(frames=info.frames, sample_rate=info.sample_rate, channels=info.channels)
        if declared is not None and declared > info.frames:
            facts["warning"] = (f"truncated: the header declares {declared} frames, the file holds {info.frames} "
                                f"({(declared - info.frames) / info.sample_rate:.2f} s missing)")
        total = grid.n_windows(decode.model_rate_samples(info, card.sample_rate))
        # Memory per worker is bounded by samples, not seconds: 5 minutes of
        # 96 kHz x 8 channels would be 900 MB of float32.
        seconds = min(segment_s, MAX_SEGMENT_SAMPLES / (info.sample_rate * info.channels))
        spans = grid.segments(total, windows_per_segment=windows_per_segment(card, seconds)) or [(0, 0)]
    except Exception as exc:  # recorded as the recording's error row
        facts["error"] = describe_failure(exc)
    return [
        dict(recording=uri, bytes=size, etag=etag, seg=seg, n_segments=len(spans), w0=w0, w1=w1,
             n_windows_total=total, **facts)
        for seg, (w0, w1) in enumerate(spans)
    ]


def decode_batch(batch: dict[str, np.ndarray], *, card_json: str) -> dict[str, np.ndarray]:
    """Segment rows -> the same rows plus ``features``, ``rms_dbfs``, ``frames_decoded``, ``warning``."""
    card, _ = _card(card_json)
    n = len(batch["recording"])
    out = {c: batch[c] for c in SEGMENT_COLUMNS}
    features, rms, decoded, warnings, errors = [], [], [], [], list(batch["error"])
    for i in range(n):
        feat = rms_i = b""
        frames_decoded = 0
        warning = ""
        w0, w1 = int(batch["w0"][i]), int(batch["w1"][i])
        if not errors[i] and w1 > w0:
            try:
                info = decode.AudioInfo(
                    frames=int(batch["frames"][i]),
                    sample_rate=int(batch["sample_rate"][i]),
                    channels=int(batch["channels"][i]),
                    format="", subtype="",
                    duration_s=int(batch["frames"][i]) / int(batch["sample_rate"][i]),
                )
                with storage.open_input(batch["recording"][i]) as f:
                    sw = decode.read_windows(f, info, card, w0, w1)
                feat = np.ascontiguousarray(sw.features, dtype=np.float32).tobytes()
                rms_i = np.ascontiguousarray(sw.rms_dbfs, dtype=np.float32).tobytes()
                frames_decoded = int(sw.frames_decoded)
                warning = "; ".join(sw.warnings)
            except Exception as exc:  # recorded as the recording's error
                start = w0 * card.hop_s
                errors[i] = f"decoding the segment at {start:.1f} s failed: {describe_failure(exc)}"
        features.append(feat)
        rms.append(rms_i)
        decoded.append(frames_decoded)
        warnings.append("; ".join(w for w in (batch["warning"][i], warning) if w))
    out.update(
        error=_column("error", errors),
        features=_column("features", features),
        rms_dbfs=_column("rms_dbfs", rms),
        frames_decoded=np.asarray(decoded, dtype=np.int64),
        warning=_column("warning", warnings),
    )
    return out


class SegmentClassifier:
    """The one stateful predictor: an ONNX session per actor, fed one or more segments a call."""

    def __init__(self, model: LoadedModel, *, device: str = "cpu", batch_windows: int = 256, threads: int = 1):
        self.model = model
        self.card = model.card
        self.classifier = OnnxClassifier(model, device=device, intra_op_threads=threads, max_batch=batch_windows)
        self.window_shape = self.card.window_shape

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = {k: v for k, v in batch.items() if k != "features"}
        blobs = list(batch["features"])
        errors = list(batch["error"])
        probs_out: list[bytes] = [b""] * len(blobs)
        arrays = []
        for i, b in enumerate(blobs):
            try:
                arrays.append(np.frombuffer(b, dtype=np.float32).reshape(-1, *self.window_shape))
            except ValueError as exc:  # recorded as the recording's error
                errors[i] = f"inference failed: features of {len(b)} bytes do not fit {self.window_shape}: {exc}"
                arrays.append(np.zeros((0, *self.window_shape), np.float32))
        counts = [len(a) for a in arrays]
        try:
            probs = self.classifier.predict(np.concatenate(arrays)) if sum(counts) else None
            offsets = np.cumsum([0, *counts])
            for i in range(len(blobs)):
                if counts[i]:
                    probs_out[i] = np.ascontiguousarray(probs[offsets[i]:offsets[i + 1]]).tobytes()
        except Exception as exc:  # one bad batch: retry row by row so only the culprit fails
            log.warning("inference failed on a batch of %d segments, retrying one by one: %s", len(blobs), exc)
            for i, a in enumerate(arrays):
                if not counts[i]:
                    continue
                try:
                    probs_out[i] = np.ascontiguousarray(self.classifier.predict(a)).tobytes()
                except Exception as row_exc:  # recorded as the recording's error
                    errors[i] = f"inference failed: {describe_failure(row_exc)}"
        out["probs"] = _column("probs", probs_out)
        out["error"] = _column("error", errors)
        return out


class SegmentPipeline:
    """Decode and classify in one process: on CPUs this avoids shipping each
    segment's features (about 2.6 MB per 2 minutes) between processes, and no
    actor waits for a decoder. With GPUs the stages stay apart instead."""

    def __init__(self, model: LoadedModel, *, batch_windows: int = 256, threads: int = 1):
        self.card_json = card_to_json(model.card)
        self.classify = SegmentClassifier(model, device="cpu", batch_windows=batch_windows, threads=threads)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.classify(decode_batch(batch, card_json=self.card_json))


_INT_COLUMNS = {"bytes", "seg", "n_segments", "w0", "w1", "n_windows_total", "frames", "sample_rate", "channels"}


def _column(name: str, values: list) -> np.ndarray:
    if name in _INT_COLUMNS:
        return np.asarray(values, dtype=np.int64)
    arr = np.empty(len(values), dtype=object)
    arr[:] = values
    return arr


def windows_per_segment(card: ModelCard, segment_s: float) -> int:
    """Whole windows that fit in ``segment_s`` (at least one): a bound, so round down."""
    return max(1, math.floor(segment_s / card.hop_s + 1e-9))

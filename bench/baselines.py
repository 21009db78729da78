"""Baselines and stage ceilings for ``bench/run_bench.py``; each mode runs as its own process.

    python bench/baselines.py naive  FILE... --model M --json OUT.json
    python bench/baselines.py pool   FILE... --model M --json OUT.json [--processes 2]
    python bench/baselines.py stages FILE    --model M --json OUT.json [--repeat 3]

``naive`` is the seed recipe as a first-time user writes it: ``librosa.load``
(default resampler), ``librosa.feature.melspectrogram`` on the whole file, a
Python loop over windows, onnxruntime with default session options, batch 1.

``pool`` is a competent hand-written version: ``multiprocessing.Pool``, one
file per task, the same librosa features with the windows cut by strides,
batched onnxruntime with one intra-op thread per process, native thread pools
pinned to one thread.

``stages`` times each stage of the chain on one file under one thread:
FLAC decode, soxr resample (soundbatch's quality), soundbatch features, model.

Every mode writes a JSON file with the windows it produced (so the caller can
check them against soundbatch) and the times it measured inside the process.
The caller times the whole process from outside.

All three produce the windows of soundbatch's grid: window ``i`` starts at
sample ``i * hop`` of the 22.05 kHz audio and a recording of ``n`` samples has
``ceil(max(0, n - window) / hop) + 1`` windows, the last one running into
zeros. The baselines pad the resampled audio with those zeros before the STFT
(a few thousand samples per file: no measurable cost), so every variant
classifies exactly the same windows.
"""

from __future__ import annotations

import os

# Before numpy/onnxruntime load: ``pool`` and ``stages`` pin native thread pools
# to one thread. ``naive`` keeps the defaults (that is the point of it).
if os.environ.get("BENCH_PIN_THREADS") == "1":
    for _key in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[_key] = "1"

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

# Card of the bundled model (soundbatch/models/README.md). The baselines hold it
# as literals, as a user copying the model's documentation would.
SR = 22050
N_FFT = 1024
HOP_LENGTH = 512
N_MELS = 64
FRAMES = 44
HOP_FRAMES = 22
EPS = 1e-9
WINDOW_SAMPLES = FRAMES * HOP_LENGTH  # 22528: nominal span of a window
HOP_SAMPLES = HOP_FRAMES * HOP_LENGTH  # 11264: between window starts


def n_windows(n_samples: int) -> int:
    """Windows of a recording of ``n_samples`` at 22.05 kHz (soundbatch's grid)."""
    if n_samples == 0:
        return 0
    return -(-max(0, n_samples - WINDOW_SAMPLES) // HOP_SAMPLES) + 1


def pad_for_windows(y: np.ndarray) -> tuple[np.ndarray, int]:
    """``y`` with trailing zeros so that every window's STFT frames fit; and the window count."""
    n = n_windows(y.shape[0])
    need = (n - 1) * HOP_SAMPLES + (FRAMES - 1) * HOP_LENGTH + N_FFT if n else 0
    if need > y.shape[0]:
        y = np.concatenate([y, np.zeros(need - y.shape[0], dtype=y.dtype)])
    return y, n


def librosa_mel(y: np.ndarray) -> np.ndarray:
    """Mel power ``(n_mels, frames)`` with the card's parameters, the librosa way."""
    import librosa

    stft = librosa.stft(y, n_fft=N_FFT, hop_length=HOP_LENGTH, window="hann", center=False)
    return librosa.feature.melspectrogram(
        S=np.abs(stft) ** 2, sr=SR, n_fft=N_FFT, hop_length=HOP_LENGTH, n_mels=N_MELS,
        fmin=0.0, fmax=SR / 2, htk=False, norm="slaney", center=False,
    )


# --------------------------------------------------------------------------
# (a) naive


def run_naive(files: list[str], model: str) -> dict:
    import librosa
    import onnxruntime as ort

    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])  # default options
    name = session.get_inputs()[0].name
    per_file = {}
    t0 = time.perf_counter()
    for path in files:
        y, _ = librosa.load(path, sr=SR)  # default res_type (soxr_hq), mono
        y, n = pad_for_windows(y)
        mel = librosa_mel(y)
        probs = []
        for i in range(n):
            w = mel[:, i * HOP_FRAMES : i * HOP_FRAMES + FRAMES]
            w = np.log(w + EPS)
            w = (w - w.mean()) / w.std()
            probs.append(session.run(None, {name: w[None, None].astype(np.float32)})[0][0])
        per_file[path] = len(probs)
    return {"windows": per_file, "work_s": time.perf_counter() - t0}


# --------------------------------------------------------------------------
# (b) multiprocessing.Pool

_session = None


def _pool_init(model: str) -> None:
    global _session
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    _session = ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])


def _pool_file(path: str) -> tuple[str, int]:
    import librosa
    from numpy.lib.stride_tricks import sliding_window_view

    y, _ = librosa.load(path, sr=SR)
    y, n = pad_for_windows(y)
    logmel = np.log(librosa_mel(y) + EPS).astype(np.float32)  # (n_mels, T)
    x = np.ascontiguousarray(sliding_window_view(logmel, FRAMES, axis=1)[:, ::HOP_FRAMES][:, :n].transpose(1, 0, 2))
    flat = x.reshape(n, -1)
    flat -= flat.mean(axis=1, keepdims=True)
    flat /= flat.std(axis=1, keepdims=True)
    name = _session.get_inputs()[0].name
    for s in range(0, n, 256):
        _session.run(None, {name: x[s : s + 256, None]})
    return path, n


def run_pool(files: list[str], model: str, processes: int) -> dict:
    import multiprocessing as mp

    t0 = time.perf_counter()
    # Longest files first would help with uneven files; these are all 10 minutes.
    with mp.get_context("fork").Pool(processes, initializer=_pool_init, initargs=(model,)) as pool:
        per_file = dict(pool.imap_unordered(_pool_file, files, chunksize=1))
    return {"windows": per_file, "work_s": time.perf_counter() - t0}


# --------------------------------------------------------------------------
# (d) stage ceilings


def _best(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def run_stages(path: str, model: str, repeat: int) -> dict:
    import onnxruntime as ort
    import soundfile as sf
    import soxr

    from soundbatch import decode
    from soundbatch.features import segment_features
    from soundbatch.grid import WindowGrid
    from soundbatch.model import load_model

    card = load_model(model).card
    grid = WindowGrid.from_card(card)
    info = sf.info(path)
    audio_s = info.frames / info.samplerate

    # Into one reused buffer, as soundbatch.decode does: a fresh 100 MB array per
    # read would time page faults, not the decoder (the first run pays them).
    buf = np.empty((info.frames, info.channels), dtype=np.float32)
    t_decode, data = _best(lambda: sf.read(path, dtype="float32", always_2d=True, out=buf)[0], repeat)
    mono = np.ascontiguousarray(data.mean(axis=1, dtype=np.float32)) if data.shape[1] > 1 else np.ascontiguousarray(data[:, 0])
    t_resample, y = _best(
        lambda: soxr.resample(mono, info.samplerate, card.sample_rate, quality=decode.RESAMPLE_QUALITY), repeat
    )
    n = grid.n_windows(y.shape[0])
    # segment_features wants y to hold every sample the windows read: pad the tail with zeros.
    a, b = grid.read_span(0, n)
    y_pad = np.zeros(b - min(a, 0), dtype=np.float32)
    y_pad[-min(a, 0) : -min(a, 0) + y.shape[0]] = y
    t_features, (feats, _rms) = _best(lambda: segment_features(y_pad, card, n, lead=-min(a, 0)), repeat)

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    x = np.ascontiguousarray(feats[:, None], dtype=np.float32)  # NCHW
    session.run(None, {name: x[:256]})  # warm-up: first run allocates

    def infer() -> None:
        for s in range(0, x.shape[0], 256):
            session.run(None, {name: x[s : s + 256]})

    t_model, _ = _best(infer, repeat)
    seconds = {"decode": t_decode, "resample": t_resample, "features": t_features, "model": t_model}
    return {
        "file": path,
        "audio_s": audio_s,
        "windows": n,
        "seconds": seconds,
        "x_realtime": {k: audio_s / v for k, v in seconds.items()},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["naive", "pool", "stages"])
    p.add_argument("files", nargs="+")
    p.add_argument("--model", required=True, help="the ONNX model (the bundled SB-CNN)")
    p.add_argument("--json", required=True, help="where to write the result")
    p.add_argument("--processes", type=int, default=2, help="pool: worker processes")
    p.add_argument("--repeat", type=int, default=3, help="stages: best of this many runs per stage")
    args = p.parse_args(argv)
    if args.mode == "naive":
        result = run_naive(args.files, args.model)
    elif args.mode == "pool":
        result = run_pool(args.files, args.model, args.processes)
    else:
        result = run_stages(args.files[0], args.model, args.repeat)
    Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Peak memory of a sweep against recording length: does it grow? (a benchmark, not a test)

Writes one recording per length (default 1 h and 24 h, 16 kHz mono WAV, tones on
quiet noise, written in chunks so this script stays small too), sweeps each with
`soundbatch run` on a local Ray, and samples the resident memory of every Ray
worker process and of the driver every 0.2 s. Prints the peaks per length and
their ratio to the shortest one.

    infra/loopback-only .venv/bin/python bench/memory_bench.py [--hours 1 24] [--out bench-out/memory]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import soundfile as sf

SAMPLE_RATE = 16000


def write_long_recording(path: Path, hours: float, *, seed: int = 0) -> None:
    """A long WAV written one minute at a time (never the whole file in memory)."""
    if path.exists() and path.stat().st_size > hours * 3600 * SAMPLE_RATE * 2:
        return
    rng = np.random.default_rng(seed)
    t = np.arange(60 * SAMPLE_RATE) / SAMPLE_RATE
    with sf.SoundFile(path, "w", SAMPLE_RATE, 1, subtype="PCM_16") as f:
        for minute in range(int(hours * 60)):
            chunk = 10 ** (-70 / 20) * rng.standard_normal(len(t))
            if minute % 3 == 0:  # a tone every third minute, 20 s long
                on = t < 20
                chunk[on] += 0.1 * np.sin(2 * np.pi * (300 + 50 * (minute % 7)) * t[on])
            f.write(chunk.astype(np.float32))


class PeakSampler(threading.Thread):
    """Samples RSS of the driver and of every Ray worker process under `root`."""

    def __init__(self, root: int, interval_s: float = 0.2):
        super().__init__(daemon=True)
        self.root, self.interval_s = root, interval_s
        self.peaks: dict[str, int] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                procs = [psutil.Process(self.root), *psutil.Process(self.root).children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            for p in procs:
                try:
                    name = p.name() if p.pid != self.root else "driver"
                    if p.pid != self.root and not name.startswith("ray::"):
                        continue
                    key = "driver" if p.pid == self.root else f"{name}"
                    self.peaks[key] = max(self.peaks.get(key, 0), p.memory_info().rss)
                except psutil.Error:
                    continue
            time.sleep(self.interval_s)


def sweep(path: Path, out: Path) -> dict:
    cmd = [str(Path(sys.executable).parent / "soundbatch"), "run", str(path), "--out", str(out), "--quiet"]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sampler = PeakSampler(proc.pid)
    sampler.start()
    output, _ = proc.communicate()
    sampler.stop.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"sweep of {path} failed:\n{output[-3000:]}")
    worker_peaks = {k: v for k, v in sampler.peaks.items() if k != "driver"}
    return {
        "wall_s": time.monotonic() - t0,
        "driver_peak_mb": sampler.peaks.get("driver", 0) / 2**20,
        "worker_peak_mb": max(worker_peaks.values(), default=0) / 2**20,
        "worker_peaks_mb": {k: round(v / 2**20) for k, v in sorted(worker_peaks.items())},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hours", type=float, nargs="+", default=[1.0, 24.0])
    p.add_argument("--out", default="bench-out/memory")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    results = {}
    for hours in args.hours:
        path = out / f"long-{hours:g}h.wav"
        print(f"writing {path} ...", flush=True)
        write_long_recording(path, hours)
        res_dir = out / f"results-{hours:g}h"
        subprocess.run(["rm", "-rf", str(res_dir)], check=True)
        results[hours] = sweep(path, res_dir)
        r = results[hours]
        print(f"{hours:g} h: {r['wall_s']:.0f} s wall, {hours * 3600 / r['wall_s']:.0f}x realtime, "
              f"driver peak {r['driver_peak_mb']:.0f} MB, worker peak {r['worker_peak_mb']:.0f} MB "
              f"{r['worker_peaks_mb']}", flush=True)
    base = results[min(results)]
    print("\n| recording | wall s | x realtime | driver peak MB | worker peak MB | worker peak vs shortest |")
    print("|---|---:|---:|---:|---:|---:|")
    for hours, r in results.items():
        print(f"| {hours:g} h | {r['wall_s']:.0f} | {hours * 3600 / r['wall_s']:.0f}x | {r['driver_peak_mb']:.0f} "
              f"| {r['worker_peak_mb']:.0f} | {r['worker_peak_mb'] / base['worker_peak_mb']:.2f}x |")
    (out / "memory.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

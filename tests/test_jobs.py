"""`ray job submit ... jobs/sweep.py` against a real Ray head on 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import polars as pl
import pytest

from conftest import free_port
from soundbatch.synth import make_archive

REPO = Path(__file__).resolve().parent.parent
RAY = str(Path(sys.executable).parent / "ray")

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]


@pytest.fixture
def ray_head():
    """`ray start --head --block` on loopback with its own ports; stopped by its PID."""
    temp_dir = tempfile.mkdtemp(prefix="sbhead-", dir="/tmp")
    ports = {name: free_port() for name in (
        "port", "dashboard-port", "dashboard-agent-listen-port", "dashboard-agent-grpc-port",
        "metrics-export-port", "runtime-env-agent-port", "ray-client-server-port", "node-manager-port",
        "object-manager-port")}
    env = dict(os.environ, RAY_AUTH_MODE="disabled",
               PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    cmd = [RAY, "start", "--head", "--block", "--node-ip-address=127.0.0.1", "--dashboard-host=127.0.0.1",
           "--num-cpus=2", "--include-dashboard=true", f"--temp-dir={temp_dir}", "--disable-usage-stats",
           *[f"--{name}={port}" for name, port in ports.items()]]
    log = open(Path(temp_dir) / "head.log", "wb")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{ports['dashboard-port']}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/version", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((Path(temp_dir) / "head.log").read_text()[-3000:])
                time.sleep(0.5)
        yield url, env
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_ray_job_submit_runs_the_sweep(ray_head, tmp_path):
    url, env = ray_head
    archive, out = tmp_path / "archive", tmp_path / "out"
    make_archive(str(archive), sensors=1, hours=0.1, file_minutes=3, seed=3)
    result = subprocess.run(
        [RAY, "job", "submit", "--address", url, "--working-dir", str(REPO), "--",
         sys.executable, "jobs/sweep.py", str(archive), "--out", str(out), "--quiet"],
        env=env, capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "succeeded" in result.stdout
    recordings = pl.read_parquet(f"{out}/recordings/**/*.parquet")
    assert recordings.height == 2
    assert set(recordings["status"]) == {"ok"}

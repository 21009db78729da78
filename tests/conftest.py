"""Shared fixtures: a moto S3 server, a local Ray, audio files.

Everything that opens a socket binds 127.0.0.1. Run any test that starts Ray
or moto inside a loopback-only network namespace::

    unshare -n sh -c 'ip link set lo up; exec .venv/bin/pytest -q'

Environment
-----------
- At configure time (before any test module is imported) ``XDG_CACHE_HOME``
  and ``NUMBA_CACHE_DIR`` point into a temporary folder removed at the end,
  so onnxruntime and numba write no caches under ``~/.cache``.
- ``s3_endpoint`` (session) sets ``AWS_ENDPOINT_URL``, dummy credentials and
  ``AWS_DEFAULT_REGION=us-east-1`` for the whole session (restored at the
  end), and removes AWS settings that would point elsewhere.
- ``ray_local`` (session) depends on ``s3_endpoint``: Ray workers copy the
  driver's environment when Ray starts, so the AWS variables must be in place
  before ``ray.init``; a test using Ray sees the moto server from its workers.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

_SESSION_DIRS: list[str] = []
_SAVED_ENV: dict[str, str | None] = {}


def pytest_configure(config: pytest.Config) -> None:
    cache = tempfile.mkdtemp(prefix="sb-cache-")
    _SESSION_DIRS.append(cache)
    for name, value in {
        "XDG_CACHE_HOME": cache,
        "NUMBA_CACHE_DIR": os.path.join(cache, "numba"),
    }.items():
        _SAVED_ENV[name] = os.environ.get(name)
        os.environ[name] = value


def pytest_unconfigure(config: pytest.Config) -> None:
    for name, value in _SAVED_ENV.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    for d in _SESSION_DIRS:
        shutil.rmtree(d, ignore_errors=True)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _moto_command(port: int) -> list[str]:
    script = Path(sys.executable).with_name("moto_server")
    if script.exists():
        return [str(script), "-H", "127.0.0.1", "-p", str(port)]
    return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]


def _clear_storage_cache() -> None:
    try:
        from soundbatch import storage
    except ImportError:  # pragma: no cover - storage is part of the package
        return
    clear = getattr(storage, "clear_cache", None)
    if clear is not None:
        clear()


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory):
    """Start a moto S3 server on 127.0.0.1 and point the AWS environment at it.

    Yields the endpoint URL (``http://127.0.0.1:<port>``).
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path_factory.mktemp("moto") / "moto.log"
    mp = pytest.MonkeyPatch()
    # Nothing from the machine's own AWS setup may leak in (and no IMDS lookups).
    for name in (
        "AWS_ENDPOINT_URL_S3",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_REGION",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ):
        mp.delenv(name, raising=False)
    aws_dir = tmp_path_factory.mktemp("aws")
    for name, value in {
        "AWS_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": str(aws_dir / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(aws_dir / "credentials"),
    }.items():
        mp.setenv(name, value)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(_moto_command(port), stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"moto_server exited with {proc.returncode}: {log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/moto-api/", timeout=1):
                    break
            except urllib.error.HTTPError:
                break  # it answers
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server did not answer on {url} within 30 s")
                time.sleep(0.1)
        _clear_storage_cache()
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        mp.undo()
        _clear_storage_cache()


@pytest.fixture
def s3_bucket(s3_endpoint: str):
    """An empty bucket ``sb-test`` on a freshly reset moto; yields ``"s3://sb-test"``."""
    import boto3

    req = urllib.request.Request(f"{s3_endpoint}/moto-api/reset", method="POST")
    with urllib.request.urlopen(req, timeout=10):
        pass
    _clear_storage_cache()
    boto3.client("s3").create_bucket(Bucket="sb-test")
    yield "s3://sb-test"
    _clear_storage_cache()


@pytest.fixture(scope="session")
def ray_local(s3_endpoint: str):
    """A local Ray (2 CPUs, 300 MiB object store), started once per session.

    Depends on ``s3_endpoint`` so Ray's workers inherit the AWS variables.
    """
    import ray

    # Ray's unix socket paths must stay under 107 characters: a short folder in /tmp.
    temp_dir = tempfile.mkdtemp(prefix="sbray-", dir="/tmp")
    mp = pytest.MonkeyPatch()
    mp.setenv("RAY_AUTH_MODE", "disabled")
    mp.setenv("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    ray.init(
        address="local",
        num_cpus=2,
        object_store_memory=300 * 2**20,
        include_dashboard=False,
        _temp_dir=temp_dir,
        ignore_reinit_error=True,
        log_to_driver=False,
    )
    try:
        import ray.data

        ray.data.DataContext.get_current().enable_progress_bars = False
        yield ray
    finally:
        ray.shutdown()
        mp.undo()
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture
def write_audio(tmp_path: Path):
    """Factory writing a test recording into ``tmp_path``; returns its absolute path.

    ``write_audio(name, audio=None, *, sample_rate=16000, seconds=1.0, subtype=None)``:
    without ``audio`` it writes a seeded 440 Hz tone at -20 dBFS. ``name`` may
    contain folders; the extension picks the format.
    """
    from soundbatch import synth

    def write(
        name: str,
        audio: np.ndarray | None = None,
        *,
        sample_rate: int = 16000,
        seconds: float = 1.0,
        subtype: str | None = None,
    ) -> str:
        if audio is None:
            audio = synth.render(
                [synth.SynthEvent(0.0, seconds, "tone", freq_hz=440.0, level_dbfs=-20.0)],
                duration_s=seconds,
                sample_rate=sample_rate,
                seed=0,
            )
        path = str(tmp_path / name)
        synth.write_recording(path, audio, sample_rate, subtype=subtype)
        return path

    return write

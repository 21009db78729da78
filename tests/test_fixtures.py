"""The shared fixtures themselves work (Ray under the loopback namespace, moto, caches)."""

from __future__ import annotations

import os

import pytest


@pytest.mark.ray
@pytest.mark.timeout(120)
def test_ray_local_runs_a_dataset(ray_local):
    import ray.data

    assert ray.data.range(10).sum("id") == 45
    assert ray_local.is_initialized()


@pytest.mark.ray
@pytest.mark.s3
@pytest.mark.timeout(120)
def test_ray_workers_see_the_s3_endpoint(ray_local, s3_bucket):
    """Workers inherit the AWS variables and can read what the driver wrote."""
    from soundbatch import storage

    storage.write_bytes(f"{s3_bucket}/hello.txt", b"hi")

    @ray_local.remote
    def read(uri: str) -> tuple[str | None, bytes]:
        from soundbatch import storage as worker_storage

        return os.environ.get("AWS_ENDPOINT_URL"), worker_storage.read_bytes(uri)

    endpoint, data = ray_local.get(read.remote(f"{s3_bucket}/hello.txt"), timeout=60)
    assert endpoint == os.environ["AWS_ENDPOINT_URL"]
    assert data == b"hi"


def test_caches_point_into_a_temporary_folder():
    home_cache = os.path.expanduser("~/.cache")
    assert not os.environ["XDG_CACHE_HOME"].startswith(home_cache)
    assert os.environ["NUMBA_CACHE_DIR"].startswith(os.environ["XDG_CACHE_HOME"])

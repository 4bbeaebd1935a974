"""The integration tests' real parts (Redis, Celery worker processes, the gateway on a socket) are
defined in ``tests/conftest.py``, shared with the end-to-end tests. Here: the object store's.

- ``seaweedfs`` (session): a real S3 server (SeaweedFS ``weed mini``, ``animegan.seaweedfs_server``)
  on free loopback ports with the bucket ``animegan``; ``object_store`` opens it under a prefix of
  the test's own (``object_store.prefix``), ``s3_env(prefix)`` gives a service process the
  ANIMEGAN_S3_*/AWS_* variables for it.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from animegan.seaweedfs_server import SeaweedFS
from jobstore.objectstore import ObjectStore
from jobstore.storage_settings import StorageSettings

_prefixes = itertools.count()


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    """A real S3 server with the bucket ``animegan`` (no other is ever created)."""
    directory = tmp_path_factory.mktemp("seaweedfs")
    server = SeaweedFS(directory / "data", log=directory / "weed.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def store_settings(server: SeaweedFS, prefix: str, **changes: Any) -> StorageSettings:
    return StorageSettings(s3_bucket="animegan", s3_endpoint_url=server.endpoint, s3_prefix=prefix, **changes)


@pytest.fixture
def object_store(seaweedfs: SeaweedFS) -> ObjectStore:
    """The bucket under a prefix no other test uses (``object_store.prefix``), with explicit keys."""
    prefix = f"t{os.getpid()}-{next(_prefixes)}"
    return ObjectStore(store_settings(seaweedfs, prefix), credentials=seaweedfs.credentials)


@pytest.fixture
def s3_env(seaweedfs: SeaweedFS) -> Callable[..., dict[str, str]]:
    """``s3_env(prefix, bucket="animegan")`` -> the ANIMEGAN_S3_* and AWS_* variables of a service process."""

    def make(prefix: str, bucket: str = "animegan") -> dict[str, str]:
        return {
            "ANIMEGAN_S3_BUCKET": bucket,
            "ANIMEGAN_S3_ENDPOINT_URL": seaweedfs.endpoint,
            "ANIMEGAN_S3_PREFIX": prefix,
            **seaweedfs.env,
        }

    return make

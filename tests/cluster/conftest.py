"""Cluster tier fixtures: the running single-node cluster (`make cluster-up`) and the objects a
test made deleted after it (tests/conftest.py attaches the cluster's logs to a failure)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cluster.support import LiveCluster
from tests.conftest import unavailable


@pytest.fixture(scope="session")
def live() -> LiveCluster:
    found = LiveCluster.find()
    if isinstance(found, str):
        unavailable(found, "cluster")
    return found


@pytest.fixture
def cluster(live: LiveCluster) -> Iterator[LiveCluster]:
    yield live
    live.cleanup()

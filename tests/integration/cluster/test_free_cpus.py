"""Work Ray would wait on forever is refused up front: batch jobs and stream consumers ask
``resources.require_free_cpus`` before they start, on the session's real Ray."""

from __future__ import annotations

import pytest

from framework.backends.resources import require_free_cpus
from framework.errors import BackendError

pytestmark = pytest.mark.integration


def test_more_cpus_than_are_free_is_refused_with_the_keys_and_the_numbers(ray_session):
    free = ray_session.available_resources().get("CPU", 0.0)
    require_free_cpus(free, "batch", "batch.concurrency x batch.cpus_per_worker", "Lower them.")
    with pytest.raises(BackendError) as err:
        require_free_cpus(free + 0.5, "batch", "batch.concurrency x batch.cpus_per_worker",
                          "Lower batch.cpus_per_worker.")
    total = ray_session.cluster_resources()["CPU"]
    assert str(err.value) == (
        f"batch: {free + 0.5:g} CPU must be free (batch.concurrency x batch.cpus_per_worker) and "
        f"the Ray cluster has {free:g} of {total:g} free. Lower batch.cpus_per_worker.")

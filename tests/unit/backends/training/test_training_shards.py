"""Each Ray Train worker gets its own shard object, never the whole training set (issue 17)."""

from __future__ import annotations

import numpy as np
import pytest

from framework.backends.ray_train._core import shards


@pytest.mark.parametrize("world", [1, 2, 3])
def test_shards_deal_every_row_once_round_robin(world):
    x = np.arange(20, dtype=np.float32).reshape(10, 2)
    y = np.array([0, 1] * 5)
    parts = shards({"x_train": x, "y_train": y}, world)
    assert len(parts) == world
    rows = np.concatenate([p["x_train"] for p in parts])
    assert sorted(map(tuple, rows)) == sorted(map(tuple, x))
    assert max(len(p["y_train"]) for p in parts) - min(len(p["y_train"]) for p in parts) <= 1
    for i, p in enumerate(parts):  # the rows worker i took from the whole set before
        np.testing.assert_array_equal(p["x_train"], x[i::world])
        assert p["x_train"].flags["C_CONTIGUOUS"]

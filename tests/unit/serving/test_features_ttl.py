"""The online client's view TTL over a fake Feast store: old values read as None, the rest untouched."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace as NS

import pytest

from framework.backends.feast.online import OnlineFeatureClient, _drop_expired
from framework.errors import BackendError

NOW = 1_800_000_000
DAY = 86_400


def response(columns: dict[str, list], stamps: dict[str, list[int]]) -> NS:
    """What ``get_online_features`` returns: ``to_dict()`` and the proto with per-feature stamps."""
    names = list(columns)
    proto = NS(metadata=NS(feature_names=NS(val=names)),
               results=[NS(event_timestamps=[NS(seconds=s) for s in stamps[n]]) for n in names])
    return NS(proto=proto, to_dict=lambda: {n: list(v) for n, v in columns.items()})


class FakeStore:
    """Two views: ``recent`` (spend, tenure; 90-day TTL) and ``lifetime`` (visits; no TTL)."""

    ttls = {"recent": timedelta(days=90), "lifetime": timedelta(0)}

    def __init__(self, stamp_days: list[float]) -> None:
        self.stamps = [0 if d is None else int(NOW - d * DAY) for d in stamp_days]
        self.registry_reads = 0

    def get_feature_view(self, name, allow_registry_cache=True):
        self.registry_reads += 1
        if name not in self.ttls:
            raise KeyError(name)
        return NS(ttl=self.ttls[name])

    def get_online_features(self, features, entity_rows):
        n = len(entity_rows)
        cols = {"spend": [1.0, 2.0, None][:n], "tenure": [3, 4, None][:n], "visits": [5, 6, None][:n]}
        return response(cols, dict.fromkeys(cols, self.stamps[:n]))


SERVICE = NS(name="svc", feature_view_projections=[
    NS(name="recent", features=[NS(name="spend"), NS(name="tenure")]),
    NS(name="lifetime", features=[NS(name="visits")])])
ROWS = [{"id": 1}, {"id": 2}, {"id": 3}]


def client(store, ttl_s=None) -> OnlineFeatureClient:
    return OnlineFeatureClient(store, SERVICE, ["spend", "tenure", "visits"], "/repo", ttl_s)


def test_a_value_older_than_its_views_ttl_reads_as_none(monkeypatch):
    monkeypatch.setattr("framework.backends.feast.online.time.time", lambda: NOW + 0.9)
    store = FakeStore([175, 1, None])  # 175 days old, a day old, no row at all
    c = client(store)
    assert c.get(ROWS) == [{"spend": None, "tenure": None, "visits": 5},
                           {"spend": 2.0, "tenure": 4, "visits": 6},
                           {"spend": None, "tenure": None, "visits": None}]
    assert c.expired == 2  # two values of one row; the unknown entity is not "expired"
    c.get(ROWS)
    assert store.registry_reads == 2 and c.expired == 4  # the TTLs were read once, at construction


def test_the_boundary_matches_the_offline_join_and_never_expires_early(monkeypatch):
    monkeypatch.setattr("framework.backends.feast.online.time.time", lambda: NOW + 0.9)
    assert client(FakeStore([90, 90 + 1 / DAY])).get(ROWS[:2]) == [
        {"spend": 1.0, "tenure": 3, "visits": 5}, {"spend": None, "tenure": None, "visits": 6}]


def test_ttls_given_win_over_the_registry_and_zero_means_forever():
    store = FakeStore([175, 1, None])
    c = client(store, {"recent": 0, "lifetime": 0})
    assert store.registry_reads == 0 and c._expiring == []
    assert c.get(ROWS)[0] == {"spend": 1.0, "tenure": 3, "visits": 5}


def test_no_ttl_anywhere_skips_the_stamps():
    store = FakeStore([175, 1, None])
    store.ttls = {"recent": None, "lifetime": timedelta(0)}
    c = client(store)
    assert c._expiring == [] and c.get(ROWS)[0]["spend"] == 1.0


def test_a_view_missing_from_the_registry_says_what_to_run():
    store = FakeStore([1])
    store.ttls = {"lifetime": timedelta(0)}
    with pytest.raises(BackendError, match=r"features.views.recent: not in the Feast registry.*loom launch"):
        client(store)


def test_pickling_carries_the_given_ttls():
    # unpickling calls from_workspace with these (the real-Feast round trip: tests/integration/feast)
    _, args = client(FakeStore([1]), {"recent": 5}).__reduce__()
    assert args == ("/repo", "svc", ["spend", "tenure", "visits"], {"recent": 5}, None)


def test_drop_expired_leaves_fresh_and_absent_values():
    cols = {"a": [1, None, 3], "b": [4, 5, 6]}
    resp = response(cols, {"a": [0, 0, NOW], "b": [0, 0, NOW]})
    got = resp.to_dict()
    assert _drop_expired(resp.proto, got, [(10, ["a"])], NOW) == 1
    assert got == {"a": [None, None, 3], "b": [4, 5, 6]}


def test_the_age_of_each_views_served_values_is_counted_until_taken(monkeypatch):
    monkeypatch.setattr("framework.backends.feast.online.time.time", lambda: NOW + 0.5)
    c = client(FakeStore([2, 1, None]))  # two and one day old, and an entity without a row
    c.get(ROWS)
    ages = c.take_ages()
    assert set(ages) == {"recent", "lifetime"}
    n, mean, top = ages["recent"]
    assert n == 2 and mean == pytest.approx(1.5 * DAY + 0.5) and top == pytest.approx(2 * DAY + 0.5)
    assert c.take_ages() == {}  # taken: the next flush sees only what was read after

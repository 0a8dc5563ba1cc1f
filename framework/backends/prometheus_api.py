"""Instant queries against a Prometheus HTTP API (``/api/v1/query``), for rollouts and `loom monitor`."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

from framework.errors import BackendError

Series = tuple[dict[str, str], float]


def instant(url: str, query: str, at: float | None = None, timeout_s: float = 10.0,
            why: str = "") -> list[Series]:
    """``query`` evaluated at ``at`` (epoch seconds; now for None): each series' labels (without
    ``__name__``) and value.

    Raises:
        BackendError: Prometheus did not answer, or refused the query; names the URL and
            ``monitoring.prometheus_url``. ``why`` says who asked (e.g. "the rollout's analysis").
    """
    params = {"query": query, **({"time": f"{at:.3f}"} if at is not None else {})}
    asked = f" {why}" if why else ""
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/api/v1/query?"
                                    f"{urllib.parse.urlencode(params)}", timeout=timeout_s) as resp:
            body = json.loads(resp.read())
    except urllib.error.HTTPError as exc:  # 400/422: the query; its JSON says why
        try:
            body = json.loads(exc.read())
        except ValueError:
            body = {"status": "error", "error": f"HTTP {exc.code}"}
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise BackendError(f"Prometheus at {url} did not answer{asked} ({exc}); check "
                           "monitoring.prometheus_url.") from exc
    if body.get("status") != "success":
        raise BackendError(f"Prometheus at {url} refused the query{asked} {query!r}: "
                           f"{body.get('error', body)}")
    return [({k: v for k, v in s["metric"].items() if k != "__name__"}, float(s["value"][1]))
            for s in body["data"]["result"]]

"""Cross-section rules of a recipe: small named ``check_*`` functions, all listed in ``CHECKS``.

Each check takes a validated Recipe and returns the problems it finds (path, value, rule, hint).
A test asserts that every ``check_*`` in this module is in ``CHECKS``, so none is silently skipped.
"""

from collections.abc import Callable, Iterable

from framework.errors import Problem
from framework.spec.data_checks import check_data_checks
from framework.spec.recipe import Recipe
from framework.spec.rollout import Canary
from framework.spec.serving import ModelFallback, RulesFallback

RESERVED_PORTS = {6379: "Ray GCS", 8265: "Ray dashboard", 10001: "Ray client", 52365: "Ray agent"}
#: The workspace head's GCS, client server and dashboard agent (``backends.ray_cluster``; copied:
#: spec imports no backend).
HEAD_PORTS = (26379, 26380, 26381)


def did_you_mean(word: str, options: Iterable[str]) -> str:
    """'Valid: a, b, c. Did you mean 'b'?' for hints."""
    import difflib  # only on the error path: validate stays fast

    options = sorted(set(options))
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    text = f"Valid: {', '.join(options)}." if options else "None are defined."
    return text + (f" Did you mean '{close[0]}'?" if close else "")


def _problem(path: str, value: object, message: str, hint: str | None = None) -> Problem:
    return Problem(path=path, message=message, value=value, has_value=True, hint=hint)


def check_view_sources(r: Recipe) -> list[Problem]:
    """Every feature view reads a declared data source."""
    return [
        _problem(f"features.views.{name}.source", v.source, "No data source has this name.",
                 did_you_mean(v.source, r.data.sources))
        for name, v in r.features.views.items()
        if v.source not in r.data.sources
    ]


def check_view_entities(r: Recipe) -> list[Problem]:
    """Every feature view names declared entities."""
    return [
        _problem(f"features.views.{name}.entities[{i}]", e, "No entity has this name.",
                 did_you_mean(e, r.features.entities))
        for name, v in r.features.views.items()
        for i, e in enumerate(v.entities)
        if e not in r.features.entities
    ]


def check_service_features(r: Recipe) -> list[Problem]:
    """The model's features are 'view:feature' references to fields of declared views."""
    problems = []
    for i, ref in enumerate(r.features.service.features):
        path = f"features.service.features[{i}]"
        view, sep, feat = ref.partition(":")
        if not sep or not feat:
            problems.append(_problem(path, ref, "A feature reference is 'view:feature'.",
                                     "Write it as e.g. 'customer_profile:tenure_months' or 'view:*'."))
        elif view not in r.features.views:
            problems.append(_problem(path, ref, f"No feature view '{view}'.",
                                     did_you_mean(view, r.features.views)))
        elif feat != "*" and feat not in r.features.views[view].fields:
            problems.append(_problem(path, ref, f"Feature view '{view}' has no field '{feat}'.",
                                     did_you_mean(feat, r.features.views[view].fields)))
    return problems


def check_unique_feature_names(r: Recipe) -> list[Problem]:
    """Model input names are unique (two views may not both feed a field of the same name)."""
    seen: set[str] = set()
    problems = []
    for view, feat in r.feature_refs():
        if feat in seen:
            problems.append(_problem("features.service.features", f"{view}:{feat}",
                                     f"Feature '{feat}' is selected twice.",
                                     "Rename the field in one view or drop one reference."))
        seen.add(feat)
    return problems


def check_push_views(r: Recipe) -> list[Problem]:
    """A ``push: true`` view is online and reads a parquet source no other view or the label reads.

    Pushed rows are appended to the source's file: another reader of the file would see rows with
    only this view's columns filled, and a CSV source's parquet copy is rebuilt without them.
    """
    problems = []
    for name, v in r.features.views.items():
        if not v.push:
            continue
        path = f"features.views.{name}.push"
        if not v.online:
            problems.append(_problem(path, True, "A push view writes to the online store; it needs "
                                     "online: true.", f"Set features.views.{name}.online: true, or "
                                     "remove push."))
        src = r.data.sources.get(v.source)
        if src is not None and src.type != "parquet":
            problems.append(_problem(path, True, f"Pushed rows are appended to the view's source "
                                     f"file; source '{v.source}' is {src.type}, and only parquet "
                                     "sources can take them.", f"Convert data.sources.{v.source} to "
                                     "parquet, or remove push."))
        others = [n for n, o in r.features.views.items() if n != name and o.source == v.source]
        if v.source == r.training.label.source:
            others.append("training.label")
        if others:
            problems.append(_problem(path, True, f"Source '{v.source}' is also read by "
                                     f"{', '.join(others)}; pushed rows would reach them with only "
                                     f"the columns of view '{name}' filled.", "Give the push view a source "
                                     "of its own."))
    return problems


def check_label_source(r: Recipe) -> list[Problem]:
    """The training label reads a declared data source."""
    src = r.training.label.source
    if src in r.data.sources:
        return []
    return [_problem("training.label.source", src, "No data source has this name.",
                     did_you_mean(src, r.data.sources))]


def check_label_not_a_feature(r: Recipe) -> list[Problem]:
    """The label column is not also a model input (that would leak the answer)."""
    col = r.training.label.column
    if col not in r.feature_names():
        return []
    return [_problem("training.label.column", col, "The label is also one of the model's features.",
                     "Remove it from features.service.features.")]


def check_split_fractions(r: Recipe) -> list[Problem]:
    """Validation and test fractions leave rows to train on."""
    s = r.training.split
    total = s.validation_fraction + s.test_fraction
    if total < 0.9:
        return []
    return [_problem("training.split", round(total, 4),
                     "validation_fraction + test_fraction must be below 0.9 to leave training rows.",
                     "Typical values are 0.15 and 0.15.")]


def check_num_class(r: Recipe) -> list[Problem]:
    """multi:softprob needs num_class; other objectives must not set it."""
    m = r.training.model
    if m.objective == "multi:softprob" and m.num_class is None:
        return [_problem("training.model.num_class", None, "multi:softprob needs num_class.",
                         "Set training.model.num_class to the number of classes (>= 2).")]
    if m.objective != "multi:softprob" and m.num_class is not None:
        return [_problem("training.model.num_class", m.num_class,
                         f"num_class applies to multi:softprob only, not {m.objective}.",
                         "Remove training.model.num_class.")]
    return []


def check_gate_metrics(r: Recipe) -> list[Problem]:
    """Gates name metrics the objective produces and give a threshold."""
    problems = []
    for i, g in enumerate(r.training.gates):
        if g.metric not in r.metrics:
            problems.append(_problem(f"training.gates[{i}].metric", g.metric,
                                     f"Objective {r.training.model.objective} produces no such metric.",
                                     did_you_mean(g.metric, r.metrics)))
        if g.min is None and g.max is None:
            problems.append(_problem(f"training.gates[{i}]", g.metric, "A gate needs 'min' or 'max'.",
                                     f"e.g. {{metric: {g.metric}, min: 0.7}}"))
    return problems


def check_tuning(r: Recipe) -> list[Problem]:
    """A sweep optimises a metric the objective produces, over well-formed ranges."""
    t = r.training.tuning
    if t is None:
        return []
    problems = []
    if t.metric not in r.metrics:
        problems.append(_problem("training.tuning.metric", t.metric,
                                 f"Objective {r.training.model.objective} produces no such metric.",
                                 did_you_mean(t.metric, r.metrics)))
    for name, dim in t.search_space.items():
        low, high = getattr(dim, "low", None), getattr(dim, "high", None)
        if low is not None and high is not None and not low < high:
            problems.append(_problem(f"training.tuning.search_space.{name}", f"{low}..{high}",
                                     "low must be below high.", "Swap or widen the bounds."))
        if getattr(dim, "type", "") == "loguniform" and low is not None and low <= 0:
            problems.append(_problem(f"training.tuning.search_space.{name}.low", low,
                                     "loguniform bounds must be positive.", "Use e.g. low: 0.001."))
    return problems


def check_canary_steps(r: Recipe) -> list[Problem]:
    """Canary steps are percents 1..100 that rise and end at 100."""
    if not isinstance(r.rollout, Canary):
        return []
    steps = r.rollout.steps
    problems = [
        _problem(f"rollout.steps[{i}]", s, "Traffic percent must be 1..100.")
        for i, s in enumerate(steps)
        if not 1 <= s <= 100
    ]
    problems += [
        _problem(f"rollout.steps[{i}]", s, f"Steps must rise: {s} follows {steps[i - 1]}.",
                 "Order them from smallest to largest, e.g. [5, 25, 50, 100].")
        for i, s in enumerate(steps)
        if i > 0 and s <= steps[i - 1]
    ]
    if steps[-1] != 100:
        problems.append(_problem("rollout.steps", steps, "Canary steps must end at 100.",
                                 f"Append 100: {steps + [100]}."))
    return problems


def check_fallback_chain(r: Recipe) -> list[Problem]:
    """Fallback levels are well ordered: each at most once, 'default' last, none the model itself."""
    chain = r.serving.fallback
    problems = []
    kinds = [lvl.type for lvl in chain]
    for i, lvl in enumerate(chain):
        if kinds.index(lvl.type) != i and lvl.type != "model":
            problems.append(_problem(f"serving.fallback[{i}].type", lvl.type,
                                     "This fallback level appears twice.", "Keep one."))
        if lvl.type == "default" and i != len(chain) - 1:
            problems.append(_problem(f"serving.fallback[{i}].type", lvl.type,
                                     "'default' must be the last fallback level; later ones never run.",
                                     "Move it to the end of serving.fallback."))
        if isinstance(lvl, ModelFallback) and lvl.model_name == r.model_id:
            problems.append(_problem(f"serving.fallback[{i}].model_name", lvl.model_name,
                                     "A model cannot fall back to itself.",
                                     "Use {type: previous_version} for an older version of this model."))
    return problems


def check_fallback_rules(r: Recipe) -> list[Problem]:
    """Fallback rules test features the model reads."""
    names = r.feature_names()
    return [
        _problem(f"serving.fallback[{i}].rules[{j}].when.{feat}", feat,
                 "Rules can test only the model's features.", did_you_mean(feat, names))
        for i, lvl in enumerate(r.serving.fallback) if isinstance(lvl, RulesFallback)
        for j, rule in enumerate(lvl.rules)
        for feat in rule.when
        if feat not in names
    ]


def check_label_mapping(r: Recipe) -> list[Problem]:
    """Label mapping applies to binary classifiers only."""
    if r.serving.labels is None or r.task == "binary":
        return []
    return [_problem("serving.labels", "labels", f"Label mapping needs a binary objective, not {r.task}.",
                     "Remove serving.labels.")]


def check_autoscaling(r: Recipe) -> list[Problem]:
    """Autoscaling bounds are ordered."""
    a = r.serving.autoscaling
    if a is None or a.min_replicas <= a.max_replicas:
        return []
    return [_problem("serving.autoscaling.min_replicas", a.min_replicas,
                     f"min_replicas is above max_replicas ({a.max_replicas}).", "Lower it or raise max.")]


def check_ports(r: Recipe) -> list[Problem]:
    """The HTTP, metrics and dashboard ports do not collide with each other or with Ray's own ports."""
    problems = []
    for path, port in (("serving.http.port", r.serving.http.port),
                       ("env.metrics_export_port", r.env.metrics_export_port)):
        if port in RESERVED_PORTS:
            problems.append(_problem(path, port, f"Port {port} is taken by the {RESERVED_PORTS[port]}.",
                                     "Pick another port."))
    if r.serving.http.port == r.env.metrics_export_port:
        problems.append(_problem("env.metrics_export_port", r.env.metrics_export_port,
                                 "The metrics port equals the HTTP port.", "Pick another port."))
    dash = r.env.dashboard_port
    if r.env.dashboard and (dash in (r.serving.http.port, r.env.metrics_export_port)
                            or 10002 <= dash <= 19999 or dash in HEAD_PORTS):
        problems.append(_problem("env.dashboard_port", dash, "The dashboard port collides with the "
                                 "HTTP or metrics port, Ray's worker ports (10002-19999) or the "
                                 "head's own (26379-26381).", "26382 is the default."))
    if 10002 <= r.env.metrics_export_port <= 19999:
        problems.append(_problem("env.metrics_export_port", r.env.metrics_export_port,
                                 "Ray's worker ports are 10002-19999; the metrics port must be outside.",
                                 "8090 is the default."))
    return problems


def check_auth_keys(r: Recipe) -> list[Problem]:
    """With auth on, some key is configured, and key names are unique."""
    auth = r.serving.auth
    problems = []
    if auth.enabled and not auth.api_keys and auth.keys_file is None:
        problems.append(_problem("serving.auth", "enabled", "Auth is on but no API key is configured.",
                                 "Add serving.auth.api_keys: [{name: me, key: ${oc.env:LOOM_API_KEY}}], "
                                 "or set serving.auth.enabled=false for local experiments."))
    names = [k.name for k in auth.api_keys]
    problems += [
        _problem(f"serving.auth.api_keys[{i}].name", n, "Two keys share this name.", "Rename one.")
        for i, n in enumerate(names) if names.index(n) != i
    ]
    return problems


def _is_loopback(host: str) -> bool:
    import ipaddress  # only when auth is off: validate stays fast

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name other than localhost may resolve to anything
        return False


def check_unauthenticated_listener(r: Recipe) -> list[Problem]:
    """With auth off, the HTTP listener is on loopback unless the recipe explicitly accepts the exposure."""
    auth, http = r.serving.auth, r.serving.http
    if auth.enabled or http.allow_unauthenticated or _is_loopback(http.host):
        return []
    return [_problem("serving.http.host", http.host,
                     "Auth is off (serving.auth.enabled: false) and the listener is not on loopback: anyone "
                     f"who can reach {http.host}:{http.port} could call the models without a key.",
                     "Turn auth on with an API key, listen on 127.0.0.1, or set "
                     "serving.http.allow_unauthenticated: true to accept this.")]


def check_on_drift(r: Recipe) -> list[Problem]:
    """``monitoring.on_drift`` beyond ``alert`` needs rollout analyses and monitoring to act in."""
    m = r.monitoring
    if m.on_drift == "alert":
        return []
    if r.rollout.strategy == "direct":
        return [_problem("monitoring.on_drift", m.on_drift,
                         "A direct rollout has no analysis windows for the drift gate to judge.",
                         "Use rollout=canary or rollout=blue_green, or set monitoring.on_drift: alert.")]
    if not m.enabled:
        return [_problem("monitoring.on_drift", m.on_drift,
                         "monitoring.enabled is false, which turns monitoring and its drift gate off.",
                         "Set monitoring.enabled: true, or monitoring.on_drift: alert.")]
    return []


def check_prometheus_analysis(r: Recipe) -> list[Problem]:
    """Reading rollout analyses from Prometheus needs the replicas' series and windows that span
    scrapes."""
    m = r.monitoring
    if m.prometheus_url is None:
        return []
    if not m.enabled:
        return [_problem("monitoring.prometheus_url", m.prometheus_url,
                         "monitoring.enabled is false: the replicas export no series for "
                         "Prometheus to hold.",
                         "Set monitoring.enabled: true, or remove monitoring.prometheus_url.")]
    problems = []
    interval = getattr(r.rollout, "interval_s", None)
    if interval is not None and interval < 2 * m.scrape_interval_s:
        problems.append(_problem(
            "rollout.interval_s", interval,
            f"With monitoring.prometheus_url an analysis window must span at least two scrapes "
            f"(2 x monitoring.scrape_interval_s = {2 * m.scrape_interval_s:g} s).",
            "Raise rollout.interval_s or lower monitoring.scrape_interval_s."))
    if m.on_drift != "alert" and not m.drift.enabled:
        problems.append(_problem(
            "monitoring.on_drift", m.on_drift,
            "With monitoring.prometheus_url the drift gate reads the candidate's scores in its "
            "training profile's bins (ray_loom_score_bin_total), which monitoring.drift exports.",
            "Set monitoring.drift.enabled: true, or monitoring.on_drift: alert."))
    return problems


CHECKS: tuple[Callable[[Recipe], list[Problem]], ...] = (
    check_view_sources,
    check_view_entities,
    check_service_features,
    check_unique_feature_names,
    check_push_views,
    check_label_source,
    check_label_not_a_feature,
    check_split_fractions,
    check_num_class,
    check_gate_metrics,
    check_tuning,
    check_canary_steps,
    check_fallback_chain,
    check_fallback_rules,
    check_label_mapping,
    check_autoscaling,
    check_ports,
    check_auth_keys,
    check_unauthenticated_listener,
    check_data_checks,
    check_on_drift,
    check_prometheus_analysis,
)


def run_checks(recipe: Recipe) -> list[Problem]:
    """Every problem every check finds, in CHECKS order."""
    return [p for check in CHECKS for p in check(recipe)]


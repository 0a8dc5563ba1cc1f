"""The ``loom`` command: parses arguments, calls ``framework.api``, prints. It never decides."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from framework.cli_args import build_parser
from framework.errors import LoomError

#: Commands that only read recipes and state (``plan --refresh`` excepted): no engine, no child process.
READ_ONLY_COMMANDS = ("validate", "plan", "schema")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    ns = parser.parse_args(argv)
    if ns.command is None:
        parser.print_help()
        return 0
    for stream in (sys.stdout, sys.stderr):  # each line reaches a pipe (`loom launch | tee`) at once
        getattr(stream, "reconfigure", lambda **_: None)(line_buffering=True)
    if not ns.debug:
        _quiet_libraries()
    if ns.command in READ_ONLY_COMMANDS and not getattr(ns, "refresh", False):
        # Loom uses no pydantic plugins; their discovery scans every installed package's entry
        # points (~6 ms of a ~0.4 s command). Set the variable yourself to load plugins anyway.
        # Commands that start Ray processes leave the environment they inherit as it is.
        os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    try:
        return COMMANDS[ns.command](ns)
    except LoomError as exc:
        if ns.debug:
            raise
        print(exc.render(), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `loom ... | head`: the reader left; not an error
        sys.stderr.close()
        return 0
    except Exception as exc:  # a bug in Loom: short message, traceback only with --debug
        if ns.debug:
            raise
        print(f"Internal error: {type(exc).__name__}: {exc}\n(run with --debug for the traceback)",
              file=sys.stderr)
        return 1


def _quiet_libraries() -> None:
    """Engines' deprecation chatter and INFO logs are not for a person at a terminal (--debug shows them)."""
    import logging
    import warnings

    # Engines reset warning filters when they load, so silence the display itself.
    warnings.showwarning = lambda *args, **kwargs: None
    for name in ("ray", "ray.serve", "ray.data", "ray.train", "ray.tune", "mlflow", "feast", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _warn(warnings: tuple[str, ...]) -> None:
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)


def cmd_validate(ns: argparse.Namespace) -> int:
    from framework import api
    from framework.loading.hostile import redacted, walk
    from framework.loading.provenance import DEFAULT

    loaded = api.validate(ns.args, tuple(ns.templates), ns.project)
    _warn(loaded.warnings)
    if ns.show:
        import yaml

        print(yaml.safe_dump(redacted(loaded.data), sort_keys=False), end="")
    if ns.explain:
        leaves = [(p, v) for p, v in walk(redacted(loaded.data)) if not isinstance(v, (dict, list)) and p]
        width = max(len(p) for p, _ in leaves)
        for path, value in leaves:
            origin = loaded.origins.by_path.get(path) or loaded.origins(path) or DEFAULT
            print(f"{path:<{width}}  {json.dumps(value, default=str):<30}  # {origin}")
    r = loaded.recipe
    print(f"Recipe '{r.name}' is valid ({loaded.file.name}): {len(r.data.sources)} sources, "
          f"{len(r.features.views)} feature views, {len(r.feature_names())} features, "
          f"{r.training.model.objective}, rollout {r.rollout.strategy}.")
    return 0


def cmd_plan(ns: argparse.Namespace) -> int:
    from framework import api
    from framework.compile.render import render

    planned = api.plan(ns.args, tuple(ns.templates), ns.project, refresh=ns.refresh)
    _warn(planned.warnings)
    print(render(planned.plan, verbose=ns.verbose))
    if ns.out:
        ns.out.write_text(planned.plan.to_json(), encoding="utf-8")
        print(f"\nSaved the plan to {ns.out}. Apply exactly this plan with: loom apply {ns.out}")
    return 2 if ns.detailed_exitcode and planned.plan.has_changes else 0


def _on_step(total: int):
    state = {"n": 0, "t": 0.0}

    def on_step(step: Any, phase: str) -> None:
        if phase == "start":
            state["n"] += 1
            state["t"] = time.monotonic()
            print(f"[{state['n']}/{total}] {step.action:<6} {step.address} ...", flush=True)
        else:
            print(f"        done in {time.monotonic() - state['t']:.1f} s", flush=True)

    return on_step


def _progress(line: str) -> None:
    print(f"        {line}", flush=True)


def _apply(planned: Any, options: dict[str, dict[str, Any]] | None = None) -> int:
    from framework import api, ops
    from framework.compile.render import render

    print(render(planned.plan))
    if not planned.plan.has_changes:
        return 0
    print()
    results = api.apply(planned, progress=_progress, on_step=_on_step(len(planned.plan.changes)),
                        options=options)
    print(f"\nApplied {len(results)} step{'s' if len(results) != 1 else ''}.")
    if "serving.deploy" in planned.ctx.outputs:
        print("\n" + "\n".join(ops.launch_summary(planned.ctx)))
    return 0


def cmd_apply(ns: argparse.Namespace) -> int:
    from framework import api

    saved = api.load_plan(ns.plan_file)
    return _apply(api._replan_context(saved, _progress))


def cmd_launch(ns: argparse.Namespace) -> int:
    from framework import api

    planned = api.plan(ns.args, tuple(ns.templates), ns.project, refresh=ns.refresh)
    _warn(planned.warnings)
    return _apply(planned, {"RolloutBackend": {"wait": not ns.detach, "supersede": ns.supersede},
                            "ServeBackend": {"retry_rejected": ns.retry_rejected}})


def cmd_train(ns: argparse.Namespace) -> int:
    from framework import api

    planned = api.plan(ns.args, tuple(ns.templates), ns.project, until_kind="registry.register")
    _warn(planned.warnings)
    code = _apply(planned)
    register = planned.ctx.outputs.get("registry.register") or {}
    metrics = (planned.ctx.outputs.get("training.train") or {}).get("metrics") or {}
    if register:
        print(f"Model {register.get('model_name')} version {register.get('version')}; test metrics: "
              + (", ".join(f"{k}={v:.4f}" for k, v in metrics.items()) or "-"))
    return code


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str, sort_keys=True))


def cmd_cluster(ns: argparse.Namespace) -> int:
    from framework import ops

    _print_json(ops.cluster(ns.command, ns.args, tuple(ns.templates), ns.project))
    return 0


def cmd_env(ns: argparse.Namespace) -> int:
    import shlex

    from framework import ops

    found = ops.cluster("env", ns.args, tuple(ns.templates), ns.project)
    for note in found["notes"]:
        print(f"# {note}")
    for name, value in found["variables"].items():
        print(f"export {name}={shlex.quote(value)}")
    return 0


def cmd_status(ns: argparse.Namespace) -> int:
    from framework import ops

    out = ops.status(ns.args, tuple(ns.templates), ns.project)
    if ns.json:
        _print_json(out)
        return 0
    cluster = out["cluster"]
    if "recipes" in out:
        print(ops.status_table(out["recipes"]))
    else:
        _print_json(out["recipe"])
    state = "running at " + str(cluster.get("address")) if cluster.get("running") else "not running"
    if cluster.get("dashboard_url"):
        state += f", dashboard {cluster['dashboard_url']} (`loom env` for the ray/serve CLIs)"
    print(f"\nWorkspace {out['workspace']}; Ray head {state}.")
    return 0


def cmd_destroy(ns: argparse.Namespace) -> int:
    from framework import api
    from framework.compile.render import render

    planned = api.plan_destroy(ns.args, tuple(ns.templates), ns.project, ns.purge_registry)
    name = planned.plan.recipe_name
    if not planned.plan.steps:
        print(f"Recipe '{name}' has nothing applied in {planned.ctx.workspace}; nothing to destroy.")
        return 0
    print(render(planned.plan))
    if not ns.yes:
        if not sys.stdin.isatty():
            print(f"\nRefusing to destroy '{name}' without confirmation: add --yes.", file=sys.stderr)
            return 1
        if input(f"\nDestroy recipe '{name}'? Type its name to confirm: ").strip() != name:
            print("Not confirmed; nothing was changed.")
            return 1
    results = api.destroy(planned, ns.purge_registry, progress=_progress,
                          on_step=_on_step(len(planned.plan.steps)))
    print(f"\nDestroyed recipe '{name}': {len(results)} step{'s' if len(results) != 1 else ''} "
          "removed; other recipes are unchanged.")
    return 0


def cmd_predict(ns: argparse.Namespace) -> int:
    from framework import ops

    _print_json(ops.predict(ns.args, tuple(ns.templates), ns.project))
    return 0


def cmd_export(ns: argparse.Namespace) -> int:
    from pathlib import Path

    from framework import ops

    if ns.artifact == "kuberay":
        paths = ops.export_kuberay(ns.args, ns.out or Path("kuberay"), tuple(ns.templates), ns.project)
        print("Wrote " + ", ".join(str(p) for p in paths) + ". Create the Secret (see "
              "secrets.example.yaml), then kubectl apply -f each manifest.")
        if not any(p.name == "rayservice.yaml" for p in paths):
            print("No rayservice.yaml: no registered model version yet. Run the RayJob, then export again.")
        return 0
    path = ops.export_serve_config(ns.args, ns.out or Path("serve_config.yaml"), tuple(ns.templates),
                                   ns.project)
    print(f"Wrote {path}. Deploy it with: RAY_AUTH_MODE=token serve deploy {path}")
    return 0


def cmd_features(ns: argparse.Namespace) -> int:
    from framework import ops

    if ns.action == "materialize":
        _print_json(ops.materialize(ns.args, ns.end, tuple(ns.templates), ns.project))
    else:
        _print_json(ops.features_get(ns.args, tuple(ns.templates), ns.project))
    return 0


def cmd_registry(ns: argparse.Namespace) -> int:
    from framework import ops

    _print_json(ops.registry(ns.action, ns.args, ns.version, tuple(ns.templates), ns.project))
    return 0


def cmd_rollout(ns: argparse.Namespace) -> int:
    from framework import ops

    if ns.action == "status":
        print(ops.rollout_status(ns.args, tuple(ns.templates), ns.project))
    else:
        print(ops.rollout_command(ns.action, ns.args, ns.reason, tuple(ns.templates), ns.project))
    return 0


def cmd_batch(ns: argparse.Namespace) -> int:
    from framework import api

    job = api.batch(ns.args, tuple(ns.templates), ns.project, api.BatchOptions(
        input=ns.input, output=ns.output, version=ns.version, alias=ns.alias, as_of=ns.as_of,
        force=ns.force), progress=_progress)
    print(f"Predictions: {job['output']} ({job['rows']:,} rows, version {job['model_version']})")
    if job.get("missing_file"):
        print(f"Rows with missing features: {job['missing']:,}, listed in {job['missing_file']}")
    return 0


def cmd_optimize(ns: argparse.Namespace) -> int:
    from framework import api, ops

    out = api.optimize(ns.args, tuple(ns.templates), ns.project, ns.version, ns.alias,
                       progress=_progress)
    print(json.dumps(out, indent=2, sort_keys=True) if ns.json else ops.render_optimize(out))
    return 0


def cmd_stream(ns: argparse.Namespace) -> int:
    from framework import api
    from framework.streaming.render import render_status

    st = api.stream(ns.action, ns.args, tuple(ns.templates), ns.project, progress=_progress)
    print(json.dumps(st, indent=2, sort_keys=True) if ns.json else render_status(st))
    return 0


def cmd_monitor(ns: argparse.Namespace) -> int:
    from framework import api
    from framework.errors import DataError
    from framework.monitor.render import render_evaluate, render_monitor

    evaluate = bool(ns.args) and ns.args[0] == "evaluate"
    args = ns.args[1:] if evaluate else ns.args
    if evaluate and ns.labels is None:
        raise DataError("`loom monitor evaluate recipe=NAME --labels PATH` needs --labels: a parquet "
                        "or CSV file of labels with request_id or the entity keys.")
    if not evaluate and (ns.labels or ns.label_column or ns.time_column):
        raise DataError("--labels, --label-column and --time-column belong to "
                        "`loom monitor evaluate recipe=NAME`.")
    if evaluate:
        out = api.monitor_evaluate(args, ns.labels, tuple(ns.templates), ns.project, ns.label_column,
                                   ns.time_column, ns.window)
    else:
        out = api.monitor(args, tuple(ns.templates), ns.project, ns.window or "1h")
    print(json.dumps(out, indent=2, sort_keys=True, default=str) if ns.json else
          (render_evaluate if evaluate else render_monitor)(out))
    return 0


def cmd_schema(ns: argparse.Namespace) -> int:
    from framework import api

    text = json.dumps(api.schema(), indent=2, sort_keys=True) + "\n"
    if ns.out:
        ns.out.parent.mkdir(parents=True, exist_ok=True)
        ns.out.write_text(text, encoding="utf-8")
        print(f"Wrote the recipe JSON Schema to {ns.out}.")
    else:
        print(text, end="")
    return 0


COMMANDS = {
    "validate": cmd_validate,
    "plan": cmd_plan,
    "apply": cmd_apply,
    "launch": cmd_launch,
    "schema": cmd_schema,
    "train": cmd_train,
    "up": cmd_cluster,
    "down": cmd_cluster,
    "env": cmd_env,
    "status": cmd_status,
    "destroy": cmd_destroy,
    "predict": cmd_predict,
    "export": cmd_export,
    "features": cmd_features,
    "registry": cmd_registry,
    "rollout": cmd_rollout,
    "batch": cmd_batch,
    "optimize": cmd_optimize,
    "stream": cmd_stream,
    "monitor": cmd_monitor,
}


if __name__ == "__main__":
    sys.exit(main())

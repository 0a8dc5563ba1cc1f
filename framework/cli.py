"""The ``loom`` command: parses arguments, calls ``framework.api``, prints. It never decides."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from framework import __version__
from framework.errors import LoomError

EPILOG = """examples:
  loom validate recipe=churn
  loom plan recipe=churn rollout=canary training.model.params.max_depth=8
  loom launch recipe=churn
  loom plan recipe=churn -o plan.json && loom apply plan.json
"""


def _recipe_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("args", nargs="*", metavar="recipe=NAME [KEY=VALUE ...]",
                   help="the recipe (a name in recipes/ or a YAML path) and Hydra overrides")
    p.add_argument("--templates", action="append", default=[], metavar="DIR",
                   help="extra template folder (repeatable; also $LOOM_TEMPLATE_PATH)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="loom", description="Loom: ML infrastructure as YAML.",
                                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"loom {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("--project", type=Path, default=None, help="project directory (default: cwd)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("validate", help="compose and validate a recipe")
    _recipe_args(p)
    p.add_argument("--show", action="store_true", help="print the composed recipe")
    p.add_argument("--explain", action="store_true", help="print where every value came from")

    p = sub.add_parser("plan", help="show what applying the recipe would change")
    _recipe_args(p)
    p.add_argument("-o", "--out", type=Path, help="save the plan as JSON for `loom apply`")
    p.add_argument("--detailed-exitcode", action="store_true",
                   help="exit 0 when nothing changes, 2 when something would, 1 on error")
    p.add_argument("--refresh", action="store_true", help="ask the engines what they hold (slower)")
    p.add_argument("-v", "--verbose", action="store_true", help="list unchanged steps too")

    p = sub.add_parser("apply", help="apply a saved plan exactly")
    p.add_argument("plan_file", type=Path)

    p = sub.add_parser("launch", help="plan, then apply: from YAML to a running system")
    _recipe_args(p)
    p.add_argument("--refresh", action="store_true", help="ask the engines what they hold first")

    p = sub.add_parser("schema", help="write the recipe JSON Schema (for editors)")
    p.add_argument("-o", "--out", type=Path, help="file to write (default: stdout)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    ns = parser.parse_args(argv)
    if ns.command is None:
        parser.print_help()
        return 0
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


def _warn(warnings: tuple[str, ...]) -> None:
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)


def cmd_validate(ns: argparse.Namespace) -> int:
    from framework import api
    from framework.loading.hostile import walk
    from framework.loading.provenance import DEFAULT

    loaded = api.validate(ns.args, tuple(ns.templates), ns.project)
    _warn(loaded.warnings)
    if ns.show:
        import yaml

        print(yaml.safe_dump(_redacted(loaded.data), sort_keys=False), end="")
    if ns.explain:
        leaves = [(p, v) for p, v in walk(_redacted(loaded.data)) if not isinstance(v, (dict, list)) and p]
        width = max(len(p) for p, _ in leaves)
        for path, value in leaves:
            origin = loaded.origins.by_path.get(path) or loaded.origins(path) or DEFAULT
            print(f"{path:<{width}}  {json.dumps(value, default=str):<30}  # {origin}")
    r = loaded.recipe
    print(f"Recipe '{r.name}' is valid ({loaded.file.name}): {len(r.data.sources)} sources, "
          f"{len(r.features.views)} feature views, {len(r.feature_names())} features, "
          f"{r.training.model.objective}, rollout {r.rollout.strategy}.")
    return 0


def _redacted(data: Any) -> Any:
    """Secret references print as ${oc.env:VAR} / <file:...>; no secret value is ever in the data."""
    from framework.loading.hostile import field_role, walk

    import copy

    out = copy.deepcopy(data)
    for path, value in list(walk(out)):
        if isinstance(value, dict) and field_role(path) == "secret":
            ref = "${oc.env:%s}" % value["env"] if value.get("env") else f"<secret file {value.get('file')}>"
            _set(out, path, ref)
    return out


def _set(data: Any, path: str, value: Any) -> None:
    import re

    parts = [int(p) if p.isdigit() else p for p in re.split(r"\.|\[|\]", path) if p]
    for part in parts[:-1]:
        data = data[part]
    data[parts[-1]] = value


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


def _apply(planned: Any) -> int:
    from framework import api
    from framework.compile.render import render

    print(render(planned.plan))
    if not planned.plan.has_changes:
        return 0
    print()
    results = api.apply(planned, progress=_progress, on_step=_on_step(len(planned.plan.changes)))
    print(f"\nApplied {len(results)} step{'s' if len(results) != 1 else ''}.")
    _print_endpoint(planned)
    return 0


def _print_endpoint(planned: Any) -> None:
    outputs = planned.ctx.outputs.get("serving.deploy") or {}
    if outputs.get("url"):
        key = planned.ctx.recipe.serving.auth.api_keys
        auth = f" -H \"Authorization: Bearer ${key[0].key.env}\"" if key and key[0].key.env else ""
        example = {n: 0 for n in planned.ctx.recipe.feature_names()[:0]}
        keys = planned.ctx.recipe.features.entities
        entity = {k: "..." for e in keys.values() for k in e.join_keys}
        body = json.dumps({"entities": entity, **({"features": example} if example else {})})
        print(f"\nEndpoint: {outputs['url']}\n  curl -s {outputs['url']}{auth} "
              f"-H 'Content-Type: application/json' -d '{body}'")


def cmd_apply(ns: argparse.Namespace) -> int:
    from framework import api

    saved = api.load_plan(ns.plan_file)
    return _apply(api._replan_context(saved, _progress))


def cmd_launch(ns: argparse.Namespace) -> int:
    from framework import api

    planned = api.plan(ns.args, tuple(ns.templates), ns.project, refresh=ns.refresh)
    _warn(planned.warnings)
    return _apply(planned)


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
}


if __name__ == "__main__":
    sys.exit(main())

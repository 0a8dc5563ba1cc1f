"""The ``loom`` command line's grammar: every subcommand, its arguments and their help."""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path

from framework import __version__

EPILOG = """examples:
  loom validate recipe=churn
  loom plan recipe=churn rollout=canary training.model.params.max_depth=8
  loom launch recipe=churn
  loom plan recipe=churn -o plan.json && loom apply plan.json
  loom status
  loom destroy recipe=fraud --yes
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
    p.add_argument("-o", "--out", type=Path, help="save the plan as JSON for `loom apply FILE`")
    p.add_argument("--detailed-exitcode", action="store_true",
                   help="exit 0 when nothing changes, 2 when something would, 1 on error")
    p.add_argument("--refresh", action="store_true", help="ask the engines what they hold (slower)")
    p.add_argument("-v", "--verbose", action="store_true", help="list unchanged steps too")

    p = sub.add_parser("apply", help="apply a saved plan exactly")
    p.add_argument("plan_file", type=Path)

    p = sub.add_parser("launch", help="plan, then apply: from YAML to a running system")
    _recipe_args(p)
    p.add_argument("--refresh", action="store_true", help="ask the engines what they hold first")
    p.add_argument("--detach", action="store_true", help="start the rollout and return; follow it "
                   "with `loom rollout status recipe=NAME`")
    p.add_argument("--supersede", action="store_true", help="end a running rollout of this model")
    p.add_argument("--retry-rejected", action="store_true", help="roll out again a version a rollout "
                   "rejected (otherwise Loom refuses to serve it)")

    p = sub.add_parser("train", help="features, dataset, training, gates and registration only")
    _recipe_args(p)

    for name, text in (("up", "start the workspace's Ray head in the background"),
                       ("down", "stop the workspace's Ray head (and what runs on it)")):
        p = sub.add_parser(name, help=text)
        _recipe_args(p)

    p = sub.add_parser("env", help="print the export lines the ray and serve CLIs need for the "
                                   "workspace's head (eval them in your shell)")
    _recipe_args(p)

    p = sub.add_parser("status", help="every recipe applied in the project (or one, in detail) "
                                      "and the workspace's Ray head")
    _recipe_args(p)
    p.add_argument("--json", action="store_true", help="print JSON for machines")

    p = sub.add_parser("destroy", help="remove a recipe's app, rollout, Feast objects and state")
    _recipe_args(p)
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.add_argument("--purge-registry", action="store_true",
                   help="also delete the recipe's MLflow runs and model versions (kept by default)")

    p = sub.add_parser("predict", help="call the deployed model as a client would")
    _recipe_args(p)

    p = sub.add_parser("export", help="write engine-native artifacts")
    p.add_argument("artifact", choices=["serve-config", "kuberay"])
    _recipe_args(p)
    p.add_argument("-o", "--out", type=Path, default=None,
                   help="file for serve-config (default serve_config.yaml); directory for kuberay "
                        "(default kuberay/)")

    p = sub.add_parser("features", help="the feature store: materialize, look up")
    p.add_argument("action", choices=["materialize", "get"])
    _recipe_args(p)
    p.add_argument("--end", type=datetime.fromisoformat, default=None,
                   help="materialize up to this ISO time (default: now)")

    p = sub.add_parser("registry", help="registered model versions")
    p.add_argument("action", choices=["list", "show", "promote"])
    _recipe_args(p)
    p.add_argument("--version", default=None, help="version number or alias")

    p = sub.add_parser("rollout", help="the model's rollout: status, promote, abort, rollback")
    p.add_argument("action", choices=["status", "promote", "abort", "rollback"])
    _recipe_args(p)
    p.add_argument("--reason", default=None, help="recorded in the audit log")

    p = sub.add_parser("batch", help="score a table of entities with a registered version "
                                     "(offline features, point in time)")
    _recipe_args(p)
    p.add_argument("--input", type=Path, default=None, help="parquet or CSV of entity keys "
                   "(default: batch.input)")
    p.add_argument("--output", type=Path, default=None, help="parquet file of predictions "
                   "(default: batch.output)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--version", default=None, help="registered version number")
    which.add_argument("--alias", default=None, help="registry alias (default: batch.alias, champion)")
    p.add_argument("--as-of", default=None, metavar="ISO",
                   help="read every row's features as of this time (rows without a timestamp column)")
    p.add_argument("--force", action="store_true", help="score again even if nothing changed")

    p = sub.add_parser("optimize", help="time each predictor (XGBoost, the compiled model) on a "
                                        "registered version at batch sizes 1 to 100,000")
    _recipe_args(p)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--version", default=None, help="registered version number")
    which.add_argument("--alias", default=None, help="registry alias (default: champion)")
    p.add_argument("--json", action="store_true", help="print JSON for machines")

    p = sub.add_parser("stream", help="streaming inference: consumers that score a stream's events "
                                      "with the served model")
    p.add_argument("action", choices=["up", "status", "down"])
    _recipe_args(p)
    p.add_argument("--json", action="store_true", help="print JSON for machines")

    p = sub.add_parser("monitor", help="drift and data quality of the prediction log; `monitor "
                                       "evaluate --labels PATH`: accuracy with delayed labels")
    _recipe_args(p)
    p.add_argument("--window", default=None, metavar="SPAN", help="how far back to read the log: "
                   "30m, 1h, 7d, all (default: 1h; evaluate: all)")
    p.add_argument("--json", action="store_true", help="print JSON for machines")
    p.add_argument("--labels", type=Path, default=None, help="evaluate: parquet or CSV of labels with "
                   "request_id or the entity keys (and optionally a label time)")
    p.add_argument("--label-column", default=None, help="evaluate: the label column (default: "
                   "training.label.column)")
    p.add_argument("--time-column", default=None, help="evaluate: the labels' time column (default: "
                   "the label source's timestamp_field, label_time, event_timestamp or timestamp, if "
                   "present); 'none': one label per entity")

    p = sub.add_parser("schema", help="write the recipe JSON Schema (for editors)")
    p.add_argument("-o", "--out", type=Path, help="file to write (default: stdout)")
    return parser

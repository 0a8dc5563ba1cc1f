#!/usr/bin/env bash
# Refreshes scripts/constraints.txt: resolves pyproject.toml's pins in a throw-away venv, with no
# constraints, and writes every installed distribution's exact version. Run it when a top-level
# pin changes (`make lock`), then run `make test` on the result before committing it.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q -e '.[dev]'
{
  echo "# Exact versions of every dependency, from a green environment; \`make install\` installs with it."
  echo "# Refresh: \`make lock\` (scripts/lock.sh), then \`make test\`. Generated $(date -u +%Y-%m-%d), $("$tmp/venv/bin/python" -V)."
  "$tmp/venv/bin/pip" freeze --exclude-editable | grep -v '^loom-ml' | LC_ALL=C sort -f
} > scripts/constraints.txt
echo "wrote scripts/constraints.txt ($(grep -vc '^#' scripts/constraints.txt) pins)"

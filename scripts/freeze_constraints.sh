#!/usr/bin/env bash
# Records the exact versions of the tested environment in constraints.txt (run inside the activated .venv).
set -euo pipefail
cd "$(dirname "$0")/.."
{
  echo "# Exact versions CI tests with (pip install -c constraints.txt ...). Regenerate with scripts/freeze_constraints.sh."
  pip freeze --exclude-editable | grep -v -i '^bert[-_]jax' | sed 's/^torch==\([0-9.]*\)+cpu/torch==\1/'
} > constraints.txt

# Sourced by scripts/demo and scripts/test: make .venv and install the
# requirements into it when they changed since the last install.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "setting up .venv (first run) ..." >&2
  "$PYTHON" -m venv .venv
fi
stamp=".venv/.requirements.sha256"
# Every file pip reads through requirements-dev.txt (its -r lines), so a change to any reinstalls.
wanted="$(cat requirements.txt requirements-cloud.txt requirements-dev.txt | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$wanted" ]; then
  echo "installing requirements into .venv ..." >&2
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
  echo "$wanted" > "$stamp"
fi
export PATH="$ROOT/.venv/bin:$PATH"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

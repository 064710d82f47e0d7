#!/usr/bin/env bash
# The project's two commands:
#   bash run.sh study [driver options]   set up, run the default offline study and build the book
#   bash run.sh test  [pytest options]   set up and run the test suite
# Set-up is idempotent: a virtual environment in .venv from the pinned requirements.txt, and the
# book's vendored JavaScript (npm) in book/_vendor.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}

setup() {
  if [ ! -x .venv/bin/python ] || ! cmp -s requirements.txt .venv/.requirements.txt; then
    echo "== setting up .venv from requirements.txt (a few minutes the first time)"
    "$PY" -m venv .venv
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -r requirements.txt
    .venv/bin/python -m pip install -q --no-deps -e .   # kdlib, importable from any folder
    cp requirements.txt .venv/.requirements.txt
  fi
  .venv/bin/python -c "from kdlib.book import vendor; vendor.ensure()"
}

browser() {
  # the browser test needs Debian's chromium; install it where we may, else that test is skipped
  if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing chromium for the browser test"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "chromium could not be installed: the browser test will be skipped"
  fi
}

cmd=${1:-}
shift || true
case "$cmd" in
  study) setup; exec .venv/bin/python -m kdlib.driver "$@" ;;
  test) setup; browser; exec .venv/bin/python -m pytest -q "$@" ;;
  *) echo "usage: bash run.sh study [--scale cpu|smoke|mid|paper ...] | bash run.sh test [pytest args]" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# make demo-down: stop everything `make demo` started, and remove .demo/.
set -uo pipefail
cd "$(dirname "$0")/.."
DEMO=$PWD/.demo
for f in emulator.pid data.pid; do
  [ -f "$DEMO/$f" ] && kill "$(cat "$DEMO/$f")" 2>/dev/null
done
[ -d "$DEMO/cluster" ] && .venv/bin/python -m sendgrid_operator.devcluster down --dir "$DEMO/cluster"
rm -rf "$DEMO"
echo "demo stopped and .demo/ removed"

#!/usr/bin/env bash
# `make run`: open the app; without a display, say so and run its self-test under Xvfb instead.
set -euo pipefail
PY="${1:-.venv/bin/python}"
if [ -n "${DISPLAY:-}" ] || [ -n "${WAYLAND_DISPLAY:-}" ]; then
  exec "$PY" -m app.main "${@:2}"
fi
mkdir -p out
echo "No display found: running the app's self-test under Xvfb instead of opening a window."
xvfb-run -a -s "-screen 0 1600x1000x24" "$PY" -m app.main --selftest --screenshot out/selftest.png
echo "Screenshot written to out/selftest.png"

#!/usr/bin/env bash
# Run the built app's self-test offscreen, with HOME pointed at an empty folder; fail unless it predicted.
set -euo pipefail
APP=dist/cellcounter/cellcounter-app
[ -x "$APP" ] || { echo "no built app at $APP; run make package first" >&2; exit 2; }
home=$(mktemp -d)
out=$(mktemp -d)
run() { if [ -n "${DISPLAY:-}" ]; then "$@"; else xvfb-run -a -s "-screen 0 1600x1000x24" "$@"; fi; }
HOME="$home" XDG_CONFIG_HOME= XDG_CACHE_HOME= XDG_DATA_HOME= run "$APP" --selftest --screenshot "$out/selftest.png" \
  | tee "$out/summary.txt"
python3 - "$out/summary.txt" <<'PY'
import json, sys
summary = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
backends = summary.get("backends", {})
assert summary.get("model"), f"the built app did not predict: {summary}"
assert set(backends) == {"auto", "onnx", "torch"}, backends
counts = {k: sum(v["counts"].values()) for k, v in backends.items()}
assert counts["auto"] > 0 and abs(counts["auto"] - counts["torch"]) <= max(2, counts["torch"] // 10), counts
print("packaged self-test ok:", {k: v["runs_on"] for k, v in backends.items()})
PY
# the CLI is in the same binary
HOME="$home" "$APP" cli info resources/samples/blood --json | tail -1
echo "files written under HOME: $(cd "$home" && find . -type f | sed 's|^\./||' | cut -d/ -f1-2 | sort -u | tr '\n' ' ')"
# nothing phones home: OpenVINO's telemetry would leave its client id in ~/intel, ONNX Runtime's a device id and
# an event queue in ~/.cache/Microsoft; every dot-folder is looked at, not only those
found=$(cd "$home" && find . -ipath '*intel*' -o -ipath '*microsoft*' -o -ipath '*onnxruntime*' -o -ipath '*telemetry*' \
  | head -5)
if [ -n "$found" ]; then echo "the app wrote usage-telemetry files under HOME: $found" >&2; exit 1; fi

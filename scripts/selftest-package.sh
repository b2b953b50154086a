#!/usr/bin/env bash
# Run a built app's self-test offscreen, with HOME pointed at an empty folder; fail unless it predicted.
#   scripts/selftest-package.sh [full|count]      (dist/cellcounter or dist/cellcounter-count; default full)
set -euo pipefail
FLAVOUR=${1:-full}
case "$FLAVOUR" in
  full) DIR=dist/cellcounter ;;
  count) DIR=dist/cellcounter-count ;;
  *) echo "usage: $0 [full|count]" >&2; exit 2 ;;
esac
APP=$DIR/cellcounter-app
[ -x "$APP" ] || { echo "no built app at $APP; run make package FLAVOUR=$FLAVOUR first" >&2; exit 2; }
if [ "$FLAVOUR" = count ] && find "$DIR" -maxdepth 3 \( -name 'torch' -o -name 'libcudart*' -o -name 'libcublas*' \
    -o -name 'libonnxruntime_providers_cuda*' \) | grep -q .; then
  echo "the counting build carries torch or CUDA: $(find "$DIR" -maxdepth 3 -name 'torch' -o -name 'libcu*' | head -3)" >&2
  exit 1
fi
home=$(mktemp -d)
out=$(mktemp -d)
run() { if [ -n "${DISPLAY:-}" ]; then "$@"; else xvfb-run -a -s "-screen 0 1600x1000x24" "$@"; fi; }
start=$(date +%s)
HOME="$home" XDG_CONFIG_HOME= XDG_CACHE_HOME= XDG_DATA_HOME= run "$APP" --selftest --screenshot "$out/selftest.png" \
  | tee "$out/summary.txt"
echo "self-test took $(( $(date +%s) - start )) s from a cold start"
python3 - "$out/summary.txt" "$FLAVOUR" <<'PY'
import json, sys
summary = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
flavour = sys.argv[2]
backends = summary.get("backends", {})
assert summary.get("model"), f"the built app did not predict: {summary}"
want = {"auto", "onnx", "torch"} if flavour == "full" else {"auto", "onnx-int8"}
assert set(backends) == want, backends
counts = {k: sum(v["counts"].values()) for k, v in backends.items()}
ref = counts["torch" if flavour == "full" else "onnx-int8"]
assert counts["auto"] > 0 and abs(counts["auto"] - ref) <= max(2, ref // 10), counts
samples = summary.get("samples", {})
assert set(samples) == {"nuclei", "leaves", "retinopathy"}, samples
assert sum(samples["nuclei"]["result"].values()) > 0 and sum(samples["leaves"]["result"].values()) > 0, samples
assert samples["retinopathy"]["result"] in range(5), samples
if flavour == "count":
    assert summary["torch"] is False, "the counting build imported torch"
    assert "OpenVINO" in backends["auto"]["runs_on"], backends["auto"]  # no GPU build: auto is OpenVINO on the CPU
    assert not summary["fine_tune"]["enabled"] and "full build" in summary["fine_tune"]["says"], summary["fine_tune"]
else:
    assert summary["fine_tune"]["enabled"], summary["fine_tune"]
    import shutil, subprocess  # GPU inference where a GPU is, the CPU otherwise
    gpu = bool(shutil.which("nvidia-smi")) and subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode == 0
    assert ("cuda" in backends["auto"]["runs_on"]) == gpu, (gpu, backends["auto"])
print(f"packaged self-test ok ({flavour}):", {k: v["runs_on"] for k, v in backends.items()},
      {k: (v["model"], v["result"]) for k, v in samples.items()})
PY
# the CLI is in the same binary
HOME="$home" "$APP" cli info resources/samples/blood --json | tail -1
if [ "$FLAVOUR" = full ]; then  # training starts: one step from scratch on the blood sample, a model written
  HOME="$home" "$APP" train --task blood --data resources/samples/blood --val resources/samples/blood --init none \
    --max-steps 1 --min-size 192 --max-size 256 --fpn-channels 32 --out "$out/train" >"$out/train.txt" 2>&1 \
    || { tail -20 "$out/train.txt" >&2; exit 1; }
  [ -f "$out/train/model/card.json" ] || { echo "training wrote no model" >&2; exit 1; }
  echo "training in the full build: $(grep -m1 '^validation' "$out/train.txt" | cut -c1-100)"
fi
if [ "$FLAVOUR" = count ]; then  # training says what it needs instead of failing on an import
  if HOME="$home" "$APP" train --help >"$out/train.txt" 2>&1; then echo "train ran in the counting build" >&2; exit 1; fi
  grep -q "full build" "$out/train.txt" || { cat "$out/train.txt" >&2; exit 1; }
  echo "train in the counting build: $(tail -1 "$out/train.txt")"
fi
echo "files written under HOME: $(cd "$home" && find . -type f | sed 's|^\./||' | cut -d/ -f1-2 | sort -u | tr '\n' ' ')"
# nothing phones home: OpenVINO's telemetry would leave its client id in ~/intel, ONNX Runtime's a device id and
# an event queue in ~/.cache/Microsoft; every dot-folder is looked at, not only those
found=$(cd "$home" && find . -ipath '*intel*' -o -ipath '*microsoft*' -o -ipath '*onnxruntime*' -o -ipath '*telemetry*' \
  | head -5)
if [ -n "$found" ]; then echo "the app wrote usage-telemetry files under HOME: $found" >&2; exit 1; fi

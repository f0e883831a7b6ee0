#!/usr/bin/env bash
# bench/gpu/device-check.sh — the GPU backend's one prepared run on the H200 device machine (no .NET SDK there).
#
# Prepare here (the dev machine), from the repo root:
#   dotnet build src/Engine.Cli -c Release
#   ../shared/tools/device-pack src/Engine.Cli/bin/Release/net10.0      # -> .device/ (runtime + engine, git-ignored)
# Dry run here (gpu-sim, tiny shape; ~3 min): see the overrides below.
# Then one device call:  run(command="bash bench/gpu/device-check.sh", carry=[".device"], timeout_s=600)
# What it does, inside a 560 s budget (each stage has its own timeout and is skipped when the budget is short):
#   1. engine inspect --devices                               -> $OUT/devices.txt
#   2. engine gpu-check --backend gpu (every op vs the CPU backend by NMSE at full sizes, stories260K logits and
#      greedy ids vs CPU)                                     -> $OUT/gpu-check.txt (exit 1 on any FAIL)
#   3. per type q4_0, f16, q8_0, q4_k of --synthetic llama-1b (generated there in /tmp, not carried):
#      engine bench --backend gpu -p 512 -n 128 -d 0,4096 --random-kv -r 2  -> $OUT/bench.jsonl (one JSON array a line)
#   4. engine bench --backend gpu --parallel 1,16,64 -n 128 for q4_0, then f16   -> $OUT/bench.jsonl
#   5. a summary: t/s per row, and for decode rows GB/s = file bytes × t/s (every weight byte read once per token)
#      against the 4.3 TB/s copy roofline                     -> $OUT/summary.txt (also printed)
# Rows name the device (`cuda:NVIDIA H200`). Nothing is estimated: a stage that did not run leaves no row.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/device-check}; mkdir -p "$OUT"
BUDGET=${BUDGET:-560}
# Overrides for a dry run without a GPU: BACKEND=gpu-sim SHAPE=tiny PP=16 TG=8 DEPTHS=0,32 PAR=1,2 CHECK_ARGS=--small
BACKEND=${BACKEND:-gpu} SHAPE=${SHAPE:-llama-1b} DEPTHS=${DEPTHS:-0,4096} CHECK_ARGS=${CHECK_ARGS:-}
PP=${PP:-512} TG=${TG:-128} PAR=${PAR:-1,16,64}
log() { echo "[$(date +%T) +${SECONDS}s] $*" | tee -a "$OUT/log.txt"; }
left() { echo $((BUDGET - SECONDS)); }

if [ ! -f .device/env.sh ]; then echo "no .device/: run ../shared/tools/device-pack src/Engine.Cli/bin/Release/net10.0 first and carry .device" >&2; exit 2; fi
source .device/env.sh
E=(dotnet .device/app/net10.0/engine.dll)
nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv 2>&1 | tee "$OUT/nvidia-smi.txt"

log "devices"
timeout 60 "${E[@]}" inspect --devices 2>&1 | tee "$OUT/devices.txt"
DEVICE=$(grep -m1 "^$BACKEND " "$OUT/devices.txt" | cut -c10-37 | sed 's/ *$//')
log "device: ${DEVICE:-none}"

log "gpu-check"
timeout 150 "${E[@]}" gpu-check --backend "$BACKEND" --model models/stories260K.gguf $CHECK_ARGS 2>&1 | tee "$OUT/gpu-check.txt"
log "gpu-check exit ${PIPESTATUS[0]}"

: > "$OUT/bench.jsonl"
bench() {  # $1 = stage timeout, rest = bench args
  local t=$1; shift
  if [ "$(left)" -lt "$t" ]; then log "SKIP (budget) bench $*"; return; fi
  log "bench $*"
  printf '%s\t' "$*" >> "$OUT/bench.jsonl"
  timeout "$t" "${E[@]}" bench --backend "$BACKEND" --synthetic "$SHAPE" --cache-dir /tmp/engine-models --json "$@" \
    2>>"$OUT/bench-stderr.txt" | tr -d '\n' >> "$OUT/bench.jsonl"
  echo >> "$OUT/bench.jsonl"
  log "bench exit ${PIPESTATUS[0]}"
}
for t in q4_0 f16; do bench 100 --type $t -p "$PP" -n "$TG" -d "$DEPTHS" --random-kv -r 2; done
bench 70 --type q4_0 -p 0 -n "$TG" --parallel "$PAR" -r 1
for t in q8_0 q4_k; do bench 100 --type $t -p "$PP" -n "$TG" -d "$DEPTHS" --random-kv -r 2; done
bench 70 --type f16 -p 0 -n "$TG" --parallel "$PAR" -r 1
for t in q8_0 q4_k; do bench 60 --type $t -p 0 -n "$TG" --parallel "$PAR" -r 1; done

log "summary"
python3 - "$OUT/bench.jsonl" "${DEVICE:-unknown device}" <<'PY' | tee "$OUT/summary.txt"
import json, sys
roof = 4300.0  # GB/s, device copy bandwidth measured on this machine kind (issue 10)
print(f"device: {sys.argv[2]}; roofline {roof:.0f} GB/s")
for line in open(sys.argv[1]):
    line = line.strip()
    if not line: continue
    args, _, line = line.partition("\t")
    typ_arg = args.split("--type ")[1].split()[0] if "--type " in args else "?"
    try: rows = json.loads(line)
    except Exception as e: print(f"(unparsable bench output: {e})"); continue
    size = {}
    for r in rows:
        if "file_bytes" in r: size[r.get("type")] = r["file_bytes"]
    for r in rows:
        ts = r.get("tokens_per_s_mean", 0.0)
        if "parallel" in r:
            print(f"{sys.argv[2]} {typ_arg:>6} parallel {r['parallel']:>3} {r.get('test','')}: {ts:10.1f} t/s total (ttft {r.get('ttft_ms_mean',0):.0f} ms, {r.get('preemptions',0)} preemptions)")
            continue
        test, depth, typ = r.get("test"), r.get("n_depth", r.get("depth", 0)), r.get("type")
        extra = ""
        if str(test).startswith("tg") and r.get("file_bytes"):
            gbs = r["file_bytes"] * ts / 1e9
            extra = f"  {gbs:8.1f} GB/s = {100*gbs/roof:5.1f}% of roofline"
        print(f"{r.get('backend')} {typ:>6} {test:>6} @ d{depth:<5}: {ts:10.1f} t/s{extra}")
PY
log "done"

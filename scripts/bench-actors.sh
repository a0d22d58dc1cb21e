#!/usr/bin/env bash
# Issue 5 benchmarks: decode through the actor pipeline vs the bare engine (1 session), and aggregate decode
# tok/s of N concurrent sessions vs 1 through the actors, on the `small` preset (31B shapes, 6 layers).
# One process (`pipeline bench --mode interleaved`) runs engine, actors x1 and actors xN in turn for R rounds
# over one backend, and reports per-round ratios (separate processes differ by up to ~15% on this VM).
# The JSON line goes to a results file; a table is printed at the end (scripts/bench-report.mjs actors).
#
# usage: scripts/bench-actors.sh [--model DIR] [--work DIR] [--threads 2] [--sessions 8] [--rounds 6]
#          [--prompt-tokens 128] [--decode-tokens 32] [--results FILE]
#   --model   an existing checkpoint (default: generate `make-test-model --preset small` into the work dir once)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="${TMPDIR:-/tmp}/pipeline-bench-actors"
model=""; threads="$(nproc)"; sessions=8; rounds=6; prompt=128; decode=32; results=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --model) model="$2"; shift 2 ;;
    --work) work="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --sessions) sessions="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --prompt-tokens) prompt="$2"; shift 2 ;;
    --decode-tokens) decode="$2"; shift 2 ;;
    --results) results="$2"; shift 2 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
mkdir -p "$work"
results="${results:-$work/results-$(date -u +%Y%m%dT%H%M%SZ).jsonl}"
log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }

log "building pipeline (Release)"
dotnet build "$repo/src/Host/Pipeline.Host.csproj" -c Release -v quiet -nologo >&2
pipeline="$repo/src/Host/bin/Release/net10.0/pipeline"
if [[ -z "$model" ]]; then
  model="$work/small"
  if [[ ! -f "$model/config.json" ]]; then
    avail=$(df -B1 --output=avail "$work" | tail -1)
    (( avail > 5000000000 )) || { echo "not enough disk in $work for the 2.45 GB small preset" >&2; exit 1; }
    log "pipeline make-test-model --preset small"
    rm -rf "$model"
    "$pipeline" make-test-model --preset small --out "$model" > "$work/make-test-model.log" 2>&1 \
      || { tail -3 "$work/make-test-model.log" >&2; exit 1; }
  fi
fi

log "engine, actors x1, actors x$sessions interleaved, $rounds rounds"
"$pipeline" bench --model "$model" --threads "$threads" --prompt-tokens "$prompt" --decode-tokens "$decode" \
  --repeats "$rounds" --sessions "$sessions" --mode interleaved --no-bandwidth --json | tail -1 | tee -a "$results" \
  | jq -c '{overhead: .overhead.median, scaling: .scaling.median, otherProcessCores}' >&2

log "results: $results"
node "$repo/scripts/bench-report.mjs" actors "$results"

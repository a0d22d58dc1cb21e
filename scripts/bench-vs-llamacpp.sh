#!/usr/bin/env bash
# Pipeline vs llama.cpp on CPU, side by side in one run, on synthetic Gemma-4-31B-shaped models with the
# same layer count and a UD-Q2_K_XL-like byte mix (see docs/PERFORMANCE.md and the llamacpp README).
#
# Steps: copy the llamacpp bench folder to a writable work dir, setup.sh (npm), bandwidth.sh, make_gguf.mjs
# and `pipeline make-test-model --preset 31b --layers L` for each layer count, then for every layer count and
# thread count R rounds of interleaved runs (llama.cpp run.mjs, pipeline bench, llama.cpp, pipeline, ...).
# Every JSON line goes to the results file; a ratio table is printed at the end (scripts/bench-report.mjs).
#
# usage: scripts/bench-vs-llamacpp.sh [--llamacpp-dir DIR] [--work DIR] [--layers "6 12"] [--threads "1 2"]
#          [--rounds 3] [--repeats 3] [--prompt-tokens 128] [--decode-tokens 32] [--with-60] [--pipeline-60 DIR]
#          [--results FILE] [--keep]
#   --with-60       also the full 60-layer model (16.3 GiB GGUF + 17.4 GB checkpoint on disk; each engine's
#                   rounds run back to back, not interleaved: both files do not fit the page cache together)
#   --pipeline-60   an existing 60-layer checkpoint (e.g. from make-test-model --preset 31b) instead of generating one
#   --keep          keep generated models in the work dir (default: delete them at the end)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
llamacpp_dir="$repo/../shared/bench/llamacpp"
work="${TMPDIR:-/tmp}/pipeline-vs-llamacpp"
layers="6 12"; threads="1 2"; rounds=3; repeats=3; prompt=128; decode=32
with60=0; pipeline60=""; results=""; keep=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --llamacpp-dir) llamacpp_dir="$2"; shift 2 ;;
    --work) work="$2"; shift 2 ;;
    --layers) layers="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --repeats) repeats="$2"; shift 2 ;;
    --prompt-tokens) prompt="$2"; shift 2 ;;
    --decode-tokens) decode="$2"; shift 2 ;;
    --with-60) with60=1; shift ;;
    --pipeline-60) pipeline60="$2"; shift 2 ;;
    --results) results="$2"; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ -f "$llamacpp_dir/run.mjs" ]] || { echo "no llama.cpp bench folder at $llamacpp_dir (run.mjs missing); pass --llamacpp-dir" >&2; exit 2; }
for l in $layers; do (( l > 0 && l % 6 == 0 )) || { echo "--layers $l: must be a positive multiple of 6" >&2; exit 2; }; done
mkdir -p "$work"
results="${results:-$work/results-$(date -u +%Y%m%dT%H%M%SZ).jsonl}"
log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }

# ---- disk: GGUF + checkpoint per layer count (bytes from the llamacpp README / make-test-model --dry-run), 2 GB margin
need=2000000000
for l in $layers; do need=$(( need + 2 * (790000000 + l * 280000000) )); done
(( with60 )) && need=$(( need + 17600000000 + ( ${#pipeline60} > 0 ? 0 : 17500000000 ) ))
avail=$(df -B1 --output=avail "$work" | tail -1)
(( avail > need )) || { echo "not enough disk in $work: $((avail / 1000000000)) GB free, need about $((need / 1000000000)) GB" >&2; exit 1; }
log "disk: $((avail / 1000000000)) GB free in $work, need about $((need / 1000000000)) GB"

# ---- builds and tools
log "building pipeline (Release)"
dotnet build "$repo/src/Host/Pipeline.Host.csproj" -c Release -v quiet -nologo >&2
pipeline="$repo/src/Host/bin/Release/net10.0/pipeline"
rm -rf "$work/llamacpp"
mkdir -p "$work/llamacpp"
(cd "$llamacpp_dir" && tar --exclude=node_modules --exclude='*.gguf' --exclude=bandwidth -cf - . ) | (cd "$work/llamacpp" && tar -xf -)
cp "$llamacpp_dir/ggml-vocab-gemma-4.gguf" "$work/llamacpp/"
[[ -d "$llamacpp_dir/node_modules" ]] && cp -r "$llamacpp_dir/node_modules" "$work/llamacpp/"
log "llama.cpp setup"
"$work/llamacpp/setup.sh" >&2
log "read bandwidth (bandwidth.sh, 2 GiB, best of 5)"
bw_out="$("$work/llamacpp/bandwidth.sh")"
echo "$bw_out" >&2
read_gbs() { echo "$bw_out" | sed -n "s/^threads $1: read bandwidth best of 5 = \([0-9.]*\) GB\/s.*/\1/p"; }
for t in $threads; do
  [[ -n "$(read_gbs "$t")" ]] || { echo "bandwidth.sh gave no result for $t threads" >&2; exit 1; }
  echo "{\"engine\":\"bandwidth.sh\",\"threads\":$t,\"readGBs\":$(read_gbs "$t")}" >> "$results"
done

gguf() { echo "$work/gemma4-31b-synth-${1}L.gguf"; }
checkpoint() { if [[ "$1" == 60 && -n "$pipeline60" ]]; then echo "$pipeline60"; else echo "$work/pipeline-31b-${1}L"; fi; }
make_models() {
  local l="$1"
  if [[ ! -f "$(gguf "$l")" ]]; then log "make_gguf.mjs --layers $l"; (cd "$work/llamacpp" && node make_gguf.mjs --layers "$l" --out "$(gguf "$l")" >&2); fi
  if [[ ! -f "$(checkpoint "$l")/config.json" ]]; then
    log "pipeline make-test-model --preset 31b --layers $l"
    rm -rf "$(checkpoint "$l")"
    "$pipeline" make-test-model --preset 31b --layers "$l" --out "$(checkpoint "$l")" > "$work/make-test-model-${l}L.log" 2>&1 \
      || { tail -3 "$work/make-test-model-${l}L.log" >&2; exit 1; }
  fi
}
tag() { jq -c --arg layersTag "$1" --argjson round "$2" '. + {layersTag: $layersTag, round: $round}'; }
run_llama() { # layers threads round
  log "llama.cpp  ${1}L threads $2 round $3"
  (cd "$work/llamacpp" && node run.mjs --model "$(gguf "$1")" --threads "$2" --prompt-tokens "$prompt" --decode-tokens "$decode" \
     --repeats "$repeats" --read-gbs "$(read_gbs "$2")" --json) | tail -1 | tag "$1" "$3" | tee -a "$results" | jq -c '{engine, prefill: .prefillTokS.median, decode: .decodeTokS.median, otherProcessCores}' >&2
}
run_pipeline() { # layers threads round
  log "pipeline   ${1}L threads $2 round $3"
  local probe=--no-bandwidth
  [[ "$3" == 1 ]] && probe=""   # the managed bandwidth probe once per (layers, threads)
  "$pipeline" bench --model "$(checkpoint "$1")" --threads "$2" --prompt-tokens "$prompt" --decode-tokens "$decode" \
     --repeats "$repeats" $probe --json | tail -1 | tag "$1" "$3" | tee -a "$results" | jq -c '{engine, prefill: .prefillTokS.median, decode: .decodeTokS.median, otherProcessCores}' >&2
}

for l in $layers; do
  make_models "$l"
  for t in $threads; do
    for r in $(seq 1 "$rounds"); do run_llama "$l" "$t" "$r"; run_pipeline "$l" "$t" "$r"; done
  done
  (( keep )) || rm -rf "$(gguf "$l")" "$(checkpoint "$l")"
done

if (( with60 )); then
  # Not interleaved: the two 60-layer files (34 GB) do not fit the page cache together, so each engine's
  # rounds run back to back and the other's file is deleted first.
  [[ -f "$(gguf 60)" ]] || { log "make_gguf.mjs --layers 60"; (cd "$work/llamacpp" && node make_gguf.mjs --layers 60 --out "$(gguf 60)" >&2); }
  for t in $threads; do for r in $(seq 1 "$rounds"); do run_llama 60 "$t" "$r"; done; done
  (( keep )) || rm -f "$(gguf 60)"
  if [[ ! -f "$(checkpoint 60)/config.json" ]]; then
    log "pipeline make-test-model --preset 31b"
    "$pipeline" make-test-model --preset 31b --out "$(checkpoint 60)" > "$work/make-test-model-60L.log" 2>&1 \
      || { tail -3 "$work/make-test-model-60L.log" >&2; exit 1; }
  fi
  for t in $threads; do for r in $(seq 1 "$rounds"); do run_pipeline 60 "$t" "$r"; done; done
  [[ -n "$pipeline60" || $keep == 1 ]] || rm -rf "$(checkpoint 60)"
fi

log "results: $results"
node "$repo/scripts/bench-report.mjs" vs-llamacpp "$results"

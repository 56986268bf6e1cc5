#!/usr/bin/env bash
# The commands of the CI example, in one place: examples/ci/edgetune.yml runs each step as
# `examples/ci/edgetune-ci.sh STEP`, and this project's own CI runs them all on the tiny model
# (`make ci-example`, i.e. `edgetune-ci.sh selftest`), so the example cannot rot.
#
#   train             fine-tune $EDGETUNE_MODEL on $EDGETUNE_DATA            -> runs/ci
#   export            ONNX bundle (int8 default + fp32)                      -> bundles/ci
#   validate          accuracy, agreement, speed-up and batch-invariance gates
#   check             the bundle's self-check on this machine
#   bench-main        latency gate vs the PyTorch original (absolute)        -> reports/bench.json
#   bench-pr BASELINE latency gate vs BASELINE (main's reports/bench.json); without one, says so
#                     and applies bench-main's absolute gate instead
#   selftest          all of the above in a temporary folder, plus a baseline that must fail
#
# Settings (environment): EDGETUNE (the edgetune command), EDGETUNE_MODEL, EDGETUNE_DATA,
# EDGETUNE_LABEL_NAMES (empty: the data's own labels), EDGETUNE_EPOCHS (empty: the preset's),
# EDGETUNE_THREADS, EDGETUNE_MAX_ACCURACY_DROP (points the int8 default may lose, default 1.0),
# EDGETUNE_MAX_REGRESSION (how much a pull request's latency ratio may grow
# over main's), EDGETUNE_WORKDIR (where runs/, bundles/ and reports/ go).
# Exit codes: 1 a gate failed, 2 bad input or usage.
set -euo pipefail

EDGETUNE=${EDGETUNE:-edgetune}
MODEL=${EDGETUNE_MODEL:-tiny-distilbert}
DATA=${EDGETUNE_DATA:-examples/sst2-sample}
LABEL_NAMES=${EDGETUNE_LABEL_NAMES-negative,positive}
EPOCHS=${EDGETUNE_EPOCHS-1}
THREADS=${EDGETUNE_THREADS:-2}
MAX_REGRESSION=${EDGETUNE_MAX_REGRESSION:-10%}
MAX_ACCURACY_DROP=${EDGETUNE_MAX_ACCURACY_DROP:-1.0}
WORKDIR=${EDGETUNE_WORKDIR:-.}
RUN=$WORKDIR/runs/ci
BUNDLE=$WORKDIR/bundles/ci
REPORTS=$WORKDIR/reports
# Batch 1 is how the bundle serves on a device (dynamic int8 runs one row per call at any batch
# size), so comparing it with PyTorch's batched calls would judge something else. A baseline
# gate needs the same grid as the bench that recorded the baseline: both use this one.
GRID=(--batch-sizes 1 --seq-lengths 16,32)

# Print each edgetune command before running it, so the CI log shows what was gated.
et() {
    echo "+ edgetune $*" >&2
    "$EDGETUNE" "$@"
}

note() {
    # A GitHub annotation on Actions, a plain line elsewhere.
    if [ "${GITHUB_ACTIONS:-}" = true ]; then echo "::warning::$*"; else echo "NOTE: $*"; fi
}

train() {
    local opts=()
    if [ -n "$LABEL_NAMES" ]; then opts+=(--label-names "$LABEL_NAMES"); fi
    if [ -n "$EPOCHS" ]; then opts+=(--epochs "$EPOCHS"); fi
    et train --model "$MODEL" --data "$DATA" --output "$RUN" "${opts[@]}" --quiet
}

export_bundle() {
    # Validation at the end of export is skipped: the validate step gates it.
    et export "$RUN" --output "$BUNDLE" --variants fp32 --no-validate --quiet
}

# Peak memory (one fresh process per variant) is reported but not gated; skipping it saves
# about 10 s on 2 cores.
validate() {
    et validate "$BUNDLE" --threads "$THREADS" --no-memory \
        --max-accuracy-drop "$MAX_ACCURACY_DROP" --min-agreement 0.97 --min-speedup 32:1.5
}

check() {
    et check "$BUNDLE"
}

# The absolute gate: at batch 1 the bundle may not be slower than the PyTorch original it was
# exported from, timed side by side on this runner (a ratio, so it holds on any machine).
bench_main() {
    mkdir -p "$REPORTS"
    et bench "$BUNDLE" --compare pytorch --threads "$THREADS" "${GRID[@]}" \
        --max-regression 0% \
        --output "$REPORTS/bench.json" --markdown "$REPORTS/bench.md" --junit "$REPORTS/bench.xml"
}

# The regression gate: the ratio to PyTorch may grow at most MAX_REGRESSION over the ratio main
# recorded (main itself passed the absolute gate). No baseline yet: say so, gate absolutely.
bench_pr() {
    local baseline=$1
    if [ ! -f "$baseline" ]; then
        note "no bench baseline at $baseline (main has not stored one yet, or it expired):" \
            "gating against the PyTorch original only"
        bench_main
        return
    fi
    echo "bench baseline: $baseline (recorded on main); gate: ratio may grow $MAX_REGRESSION" >&2
    mkdir -p "$REPORTS"
    et bench "$BUNDLE" --compare pytorch --threads "$THREADS" "${GRID[@]}" \
        --baseline "$baseline" --max-regression "$MAX_REGRESSION" \
        --output "$REPORTS/bench.json" --markdown "$REPORTS/bench.md" --junit "$REPORTS/bench.xml"
}

fail() {
    echo "selftest FAILED: $*" >&2
    exit 1
}

# Every step on the tiny model in a temporary folder, in the order CI sees them: a pull request
# before main has a baseline, main storing one, a pull request gated against it, and a baseline
# no bundle can meet, which must fail the gate with exit 1. About 105 s on 2 idle cores.
selftest() {
    local here work
    here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
    work=$(mktemp -d "${TMPDIR:-/tmp}/edgetune-ci.XXXXXX")
    # shellcheck disable=SC2064  # expand $work now
    trap "rm -rf '$work'" EXIT
    export EDGETUNE_WORKDIR=$work EDGETUNE_MODEL=tiny-distilbert
    export EDGETUNE_DATA=$here/../sst2-sample EDGETUNE_LABEL_NAMES=negative,positive
    export EDGETUNE_EPOCHS=1
    # A tiny random model after one epoch sits near many decision boundaries: its int8 flips
    # up to ~1% of the 872 test rows, more where training ran in bf16 (AMX, AVX-512-BF16).
    export EDGETUNE_MAX_ACCURACY_DROP=2.0
    # Generous: two benches on a shared machine differ by noise; the gate must run, not flake.
    export EDGETUNE_MAX_REGRESSION=50%
    export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
    local self=$here/edgetune-ci.sh reports=$work/reports t0=$SECONDS rc

    for step in train export validate check; do bash "$self" "$step"; done

    echo "== pull request, no baseline yet" >&2
    bash "$self" bench-pr "$work/baseline/bench.json" 2>&1 | tee "$work/first.log"
    grep -q "no bench baseline" "$work/first.log" || fail "no 'no bench baseline' line"
    grep -q 'failures="0"' "$reports/bench.xml" || fail "absolute gate did not pass cleanly"

    echo "== main: store the baseline" >&2
    bash "$self" bench-main
    mkdir -p "$work/baseline"
    cp "$reports/bench.json" "$work/baseline/bench.json"  # what main's artifact holds

    echo "== pull request vs main's baseline" >&2
    bash "$self" bench-pr "$work/baseline/bench.json"
    grep -q 'failures="0"' "$reports/bench.xml" || fail "baseline gate did not pass cleanly"
    grep -q '"baseline": "[^"]' "$reports/bench.json" || fail "bench.json names no baseline"

    echo "== pull request vs a baseline 1000x faster than possible: must fail" >&2
    "${PYTHON:-python3}" - "$work/baseline/bench.json" "$work/impossible.json" <<'EOF'
import json, sys
report = json.load(open(sys.argv[1]))
for cell in report["grid"]:
    cell["ratio"]["ratio"] /= 1000
json.dump(report, open(sys.argv[2], "w"))
EOF
    rc=0
    bash "$self" bench-pr "$work/impossible.json" >"$work/impossible.log" 2>&1 || rc=$?
    tail -n 3 "$work/impossible.log" >&2
    [ "$rc" -eq 1 ] || fail "an impossible baseline exited $rc, not 1 (the gate's failure code)"
    grep -q "gate failed" "$work/impossible.log" || fail "no 'gate failed' line"
    grep -q 'failures="[1-9]' "$reports/bench.xml" || fail "JUnit records no failure"

    echo "selftest passed in $((SECONDS - t0)) s" >&2
}

usage() {
    echo "usage: $0 train|export|validate|check|bench-main|bench-pr BASELINE|selftest" >&2
    exit 2
}

case ${1:-} in
train) train ;;
export) export_bundle ;;
validate) validate ;;
check) check ;;
bench-main) bench_main ;;
bench-pr) if [ $# -eq 2 ]; then bench_pr "$2"; else usage; fi ;;
selftest) selftest ;;
*) usage ;;
esac

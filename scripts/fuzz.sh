#!/usr/bin/env bash
# fuzz.sh — build the libFuzzer targets (fuzz/) and run them over their corpora.
#
# Usage: scripts/fuzz.sh TARGET SECONDS     one target for SECONDS of wall time
#        scripts/fuzz.sh all SECONDS        every target in turn, SECONDS each
#        scripts/fuzz.sh --list             the target names
#
# Builds build-fuzz/ with clang (KVZ_FUZZ=ON: coverage, AddressSanitizer, UBSan) when
# needed, then runs one libFuzzer process per target, one after another (2-core machines), over
# build-fuzz/corpus/TARGET (new inputs land there, kept between runs), the committed seeds
# fuzz/corpus/TARGET and the regression inputs fuzz/regression/TARGET, with the dictionary
# fuzz/dict/TARGET.dict (JSON targets also fuzz/dict/json.dict). A crash, leak, timeout or
# out-of-memory input is written to fuzz/findings/TARGET-*. Prints libFuzzer's final
# statistics per target and appends a line to build-fuzz/fuzz-runs.tsv (date, target,
# seconds actually run, executions, cov, ft, new units, findings, CPU seconds the fuzzer
# used: on a shared machine fewer than the wall seconds). Exit status 1 when a target had a
# finding. Needs clang and libFuzzer: scripts/setup.sh --fuzz. Env: KVZ_FUZZ_JOBS (build
# jobs, default 2), KVZ_FUZZ_RSS_MB (memory limit per input, default 2048).
set -euo pipefail
cd "$(dirname "$0")/.."

PROG=fuzz.sh
TARGETS=(gguf safetensors tokenizer config chat_template context head_scores request)
JSON_TARGETS=" tokenizer config request "
log() { printf '%s: %s\n' "$PROG" "$*"; }
# User + system CPU seconds of this shell's finished children into the variable CPU (bash's
# `times`, second line; run in this shell, since a subshell has no children of its own yet).
child_cpu_seconds() {
    times >"$B/.times"
    CPU=$(sed -n 2p "$B/.times" | awk '{ s = 0; for (i = 1; i <= 2; ++i) { split($i, p, "m"); s += p[1] * 60 + p[2] } printf "%.2f", s }')
}
die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 2; }

case "${1:-}" in
    --list) printf '%s\n' "${TARGETS[@]}"; exit 0 ;;
    -h|--help|"") sed -n '2,21{s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;;
esac
[[ $# -eq 2 ]] || die "usage: scripts/fuzz.sh TARGET|all SECONDS (see --help)"
want=$1 secs=$2
[[ "$secs" =~ ^[0-9]+$ && "$secs" -gt 0 ]] || die "SECONDS must be a positive integer, got '$secs'"
if [[ "$want" == all ]]; then
    run=("${TARGETS[@]}")
else
    [[ " ${TARGETS[*]} " == *" $want "* ]] || die "unknown target '$want' (targets: ${TARGETS[*]})"
    run=("$want")
fi

command -v clang++ >/dev/null 2>&1 || die "clang++ not found: run scripts/setup.sh --fuzz"
B=build-fuzz
cmake -S . -B "$B" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
      -DKVZ_FUZZ=ON -DKVZ_BUILD_TESTS=OFF -DKVZ_BUILD_TOOLS=OFF >/dev/null
cmake --build "$B" -j"${KVZ_FUZZ_JOBS:-2}" --target "${run[@]/#/fuzz_}" >/dev/null \
    || { cmake --build "$B" -j1 --target "${run[@]/#/fuzz_}" 2>&1 | tail -n 30 >&2; die "build failed"; }

mkdir -p fuzz/findings "$B/dict" "$B/logs"
[[ -f "$B/fuzz-runs.tsv" ]] || printf 'date\ttarget\tseconds\texecutions\tcov\tft\tnew_units\tfindings\tcpu_seconds\n' >"$B/fuzz-runs.tsv"
status=0
for t in "${run[@]}"; do
    mkdir -p "$B/corpus/$t"
    dict="$B/dict/$t.dict"
    if [[ "$JSON_TARGETS" == *" $t "* ]]; then cat fuzz/dict/json.dict "fuzz/dict/$t.dict" >"$dict"
    else cp "fuzz/dict/$t.dict" "$dict"; fi
    dirs=("$B/corpus/$t" "fuzz/corpus/$t")
    [[ -d "fuzz/regression/$t" ]] && dirs+=("fuzz/regression/$t")
    before=$(find fuzz/findings -maxdepth 1 -name "$t-*" | wc -l)
    logf="$B/logs/$t.log"
    log "$t: ${secs}s over ${dirs[*]}"
    rc=0
    t0=$(date +%s)
    child_cpu_seconds; cpu0=$CPU
    "$B/fuzz/fuzz_$t" -max_total_time="$secs" -dict="$dict" -artifact_prefix="fuzz/findings/$t-" \
        -print_final_stats=1 -timeout=10 -rss_limit_mb="${KVZ_FUZZ_RSS_MB:-2048}" \
        "${dirs[@]}" >"$logf" 2>&1 || rc=$?
    ran=$(( $(date +%s) - t0 ))  # less than SECONDS when a finding stopped the run
    child_cpu_seconds
    cpu=$(awk -v a="$cpu0" -v b="$CPU" 'BEGIN { printf "%.0f", b - a }')
    after=$(find fuzz/findings -maxdepth 1 -name "$t-*" | wc -l)
    # (a run that stops at once prints no cov line: grep finds nothing, which is not an error)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$logf" | tail -n 1)
    added=$(sed -n 's/^stat::new_units_added: *//p' "$logf" | tail -n 1)
    cov=$( (grep -o 'cov: [0-9]*' "$logf" || true) | tail -n 1 | cut -d' ' -f2)
    ft=$( (grep -o 'ft: [0-9]*' "$logf" || true) | tail -n 1 | cut -d' ' -f2)
    found=$((after - before))
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$t" "$ran" "${execs:-?}" "${cov:-?}" \
        "${ft:-?}" "${added:-?}" "$found" "$cpu" >>"$B/fuzz-runs.tsv"
    log "$t: ${ran}s (${cpu} s of CPU), ${execs:-?} executions, cov ${cov:-?}, ft ${ft:-?}, ${added:-?} new units, $found new finding(s) (log: $logf)"
    # libFuzzer exits 72 (-interrupted_exitcode) when stopped by SIGINT: not a finding.
    if ((rc == 72 && found == 0)); then
        log "$t: interrupted (SIGINT) after ${ran}s, no finding"
    elif ((rc != 0 || found > 0)); then
        status=1
        grep -m 5 -E '^==[0-9]+==ERROR|^SUMMARY|runtime error|deadly signal|ERROR: libFuzzer|Test unit written' "$logf" >&2 || true
        log "$t: FINDING (libFuzzer exit status $rc); inputs in fuzz/findings/$t-*"
    fi
done
exit "$status"

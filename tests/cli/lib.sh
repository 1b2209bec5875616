# Helpers of the CLI tests (tests/cli/test_*.sh; ctest runs each as `cli_<name> KVZIP`): run
# the real binary, then check its exit status and its message text. Sourced, not run.
set -euo pipefail
KVZIP="$1"
NAME="$(basename "$0" .sh)"
MODELS="${KVZ_MODELS_DIR:-$HOME/.cache/kvzip/models}"
MODEL="$MODELS/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
OUT="" ERR="" RC=0
# Under scripts/sanitize.sh (KVZ_SANITIZE=1) SmolLM2 prefills about 30 tokens/s and decodes
# about 15 tokens/s (2 threads, 2026-12-04, Zen 4): write_doc writes a third of the records
# (at least 4), and the tests shorten what depends on the length (SANITIZED=1).
SANITIZED=0
if [[ "${KVZ_SANITIZE:-}" == 1 ]]; then SANITIZED=1; fi

# The default model carries these tests; without it they skip (77), saying so.
need_model() { [[ -f "$MODEL" ]] || { echo "$NAME: $MODEL absent; skipping"; exit 77; }; }

# run ARGS...: runs the binary; OUT = stdout, ERR = stderr, RC = exit status.
run() {
    set +e
    "$KVZIP" "$@" >"$TMP/stdout" 2>"$TMP/stderr"
    RC=$?
    set -e
    OUT="$(cat "$TMP/stdout")"
    ERR="$(cat "$TMP/stderr")"
}
die() {
    echo "$NAME: FAILED: $*"
    echo "--- stdout:"; echo "$OUT"; echo "--- stderr:"; echo "$ERR"
    exit 1
}
# expect_ok ARGS...: exit status 0.
expect_ok() { run "$@"; ((RC == 0)) || die "exit status $RC from: kvzip $*"; }
# expect_error REGEX ARGS...: exit status 1 and a `kvzip: error:` line matching REGEX on stderr.
expect_error() {
    local pat="$1"; shift
    run "$@"
    ((RC == 1)) || die "exit status $RC (expected 1) from: kvzip $*"
    grep -q '^kvzip: error: ' <<<"$ERR" || die "no 'kvzip: error:' line from: kvzip $*"
    grep -qE -- "$pat" <<<"$ERR" || die "stderr does not match /$pat/ from: kvzip $*"
}
out_has() { grep -qE -- "$1" <<<"$OUT" || die "stdout does not match /$1/"; }
out_lacks() { ! grep -qE -- "$1" <<<"$OUT" || die "stdout matches /$1/"; }
err_has() { grep -qE -- "$1" <<<"$ERR" || die "stderr does not match /$1/"; }

# write_doc N FILE: N short fact records (~20 SmolLM2 tokens each; N / 3 under the sanitizers).
write_doc() {
    local i n="$1"
    if ((SANITIZED)); then n=$((n / 3 > 4 ? n / 3 : 4)); fi
    for i in $(seq 1 "$n"); do
        echo "Record $i: the courier from harbour $((i * 7)) delivered $((i * 13 % 97)) crates of tea to warehouse $((i + 40))."
    done >"$2"
}
Q="How many crates did warehouse 45 receive?"
# The first answer after LABEL in OUT, without the '   [same]' / '   (N ms/token)' tails.
answer_after() {
    local line
    line="$(grep -F -- "$1" <<<"$OUT" | head -n 1)"
    line="${line#*"$1"}"
    line="${line%   (* ms/token)}"
    printf '%s\n' "${line%   \[*\]}"
}

#!/usr/bin/env bash
# ctest report_anywhere_smoke: `kvzip report` run from a directory outside the repository on
# a results file of docs/eval/. --no-plots writes report.md and summary.csv only; a Python
# that cannot import matplotlib, a Python that does not exist, and a binary with no plot
# script beside it each fail (exit non-zero) saying why, after writing the report; then the
# plots are made from the build tree and from an installed copy (`cmake --install`). That
# last part needs a Python with matplotlib (scripts/setup.sh installs python3-matplotlib):
# without one it is skipped (exit 77) after the failure cases have passed.
set -euo pipefail
KVZIP="$1"
BUILD="$2"
CMAKE="$3"
SRC="$(cd "$(dirname "$0")/../.." && pwd)"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
unset KVZ_PYTHON
cd "$TMP"
case "$TMP/" in "$SRC"/*) echo "report_anywhere_smoke: $TMP is inside the repository"; exit 1 ;; esac
cp "$SRC/docs/eval/smollm2-135m/results.jsonl" results.jsonl

fail() { echo "report_anywhere_smoke: $*"; exit 1; }
pngs_ok() {  # every plot present and a PNG
    for f in scores.png fidelity.png fidelity_flips.png; do
        [[ -s "$1/$f" ]] || fail "$1/$f missing"
        [[ "$(head -c 8 "$1/$f" | od -An -tx1 | tr -d ' \n')" == 89504e470d0a1a0a ]] || fail "$1/$f is not a PNG"
    done
    grep -q '^## Plots' "$1/report.md" || fail "$1/report.md does not show the plots"
}
expect_failure() {  # expect_failure DIR MESSAGE_PART ARGS...: exit 1, the reason on stderr, report written
    local dir="$1" want="$2"
    shift 2
    if "$@" results.jsonl -o "$dir" > "$dir.out" 2> "$dir.err"; then fail "exit 0 without plots: $*"; fi
    grep -q -- "$want" "$dir.err" || { cat "$dir.err"; fail "no reason given ('$want') for: $*"; }
    [[ -s "$dir/report.md" && -s "$dir/summary.csv" ]] || fail "$dir: report.md / summary.csv not written"
    [[ ! -e "$dir/scores.png" ]] || fail "$dir: plots where none could be made"
    grep -q '^## Plots' "$dir/report.md" && fail "$dir/report.md links plots that were not made"
    echo "report_anywhere_smoke: failed as expected: $(tail -n1 "$dir.err")"
}

"$KVZIP" report results.jsonl -o noplots --no-plots > noplots.out
[[ -s noplots/report.md && -s noplots/summary.csv && ! -e noplots/scores.png ]] || fail "--no-plots output wrong"

# A real Python without its site packages (where Debian's matplotlib lives): no matplotlib.
PY=python3
[[ -x /usr/bin/python3 ]] && PY=/usr/bin/python3
printf '#!/bin/sh\nexec %s -S "$@"\n' "$PY" > python-no-site
chmod +x python-no-site
expect_failure nompl "cannot import matplotlib" "$KVZIP" report --python "$TMP/python-no-site"
expect_failure nopython "cannot be run" "$KVZIP" report --python "$TMP/no-such-python"
mkdir lonely
cp "$KVZIP" lonely/kvzip
expect_failure noscript "no plot script" lonely/kvzip report

has_mpl() { [[ -x "$1" ]] || command -v "$1" > /dev/null && "$1" -c "import matplotlib" 2> /dev/null; }
if ! has_mpl python3 && ! has_mpl /usr/bin/python3 && ! has_mpl "$HOME/.cache/kvzip/bench-venv/bin/python"; then
    echo "report_anywhere_smoke: no Python with matplotlib (scripts/setup.sh installs python3-matplotlib); plotting part skipped"
    exit 77
fi
"$KVZIP" report results.jsonl -o build-tree
pngs_ok build-tree
[[ ! -e build-tree/head_kept.png ]] || fail "a head picture from records without head_kept"
# Records with each head's kept fraction (what `kvzip eval` writes now) add the layer x head picture.
python3 - results.jsonl > heads.jsonl <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r["ratio"] < 1:
        r["head_kept"] = [[round((l * 3 + h) % 7 / 7, 4) for h in range(3)] for l in range(30)]
    print(json.dumps(r))
PY
"$KVZIP" report heads.jsonl -o heads
pngs_ok heads
[[ "$(head -c 8 heads/head_kept.png | od -An -tx1 | tr -d ' \n')" == 89504e470d0a1a0a ]] || fail "no head_kept.png"
grep -q 'head_kept.png' heads/report.md || fail "report.md does not show the head picture"
[[ "$(head -n1 heads/head_kept.csv)" == "model,task,method,ratio,layer,head,kept" ]] || fail "head_kept.csv"
"$CMAKE" --install "$BUILD" --prefix "$TMP/prefix" > install.log
[[ -x prefix/bin/kvzip && -f prefix/share/kvzip/plot-report.py ]] || { cat install.log; fail "install layout"; }
prefix/bin/kvzip report results.jsonl -o installed
pngs_ok installed
echo "report_anywhere_smoke: ok (plots from the build tree and from an install, failures explained)"

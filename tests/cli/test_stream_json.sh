#!/usr/bin/env bash
# `ask` streams each answer as it is generated; --json on ask and compress writes one
# machine-readable record to stdout; the demo's headline counts answers that contain the
# expected fact beside exact matches.
source "$(dirname "$0")/lib.sh"
need_model
write_doc 30 "$TMP/doc.txt"
expect_ok compress -m "$MODEL" --context "$TMP/doc.txt" -o "$TMP/c.kvz" -t 2

# Streaming: the first bytes of a long answer reach the pipe well before its end (with --json
# the readable lines, the answer among them, go to stderr; the record tells its length).
# Under the sanitizers (decode about 15 tokens/s) at most 60 tokens.
n_answer=160
((SANITIZED)) && n_answer=60
python3 - "$KVZIP" "$MODEL" "$TMP/c.kvz" "$n_answer" <<'PY' || die "streaming"
import json, os, subprocess, sys, time
cli, model, ctx, n_answer = sys.argv[1:5]
p = subprocess.Popen([cli, "ask", "-m", model, "--load", ctx, "-n", n_answer, "-t", "2", "--json", "-q",
                      "Write out every record of the registry, one per line, with all its numbers."],
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
fd, buf, t_first, t_end = p.stderr.fileno(), b"", None, None
marker = b"  answer: "
while True:
    chunk = os.read(fd, 4096)
    if not chunk:
        break
    buf += chunk
    i = buf.find(marker)
    if t_first is None and i >= 0 and len(buf) > i + len(marker) + 2:
        t_first = time.monotonic()
    if t_end is None and b"ms/token)" in buf:
        t_end = time.monotonic()
rec = json.loads(p.stdout.read())
assert p.wait() == 0, buf
assert t_first is not None and t_end is not None, buf
a = rec["answers"][0]
n, ms = a["n_tokens"], a["ms_per_token"]
assert n >= 40, f"a {n}-token answer is too short to see streaming"
gap = t_end - t_first
print(f"first answer bytes {1e3 * gap:.0f} ms before its end; {n} tokens at {ms:.2f} ms/token")
# Printed in one piece, both moments would coincide; streamed, most of the decode lies between.
assert gap > 0.5 * (n - 1) * ms / 1e3, (gap, n, ms)
PY

# --json on ask --context: one record, answers as printed (the readable lines on stderr).
expect_ok ask -m "$MODEL" --context "$TMP/doc.txt" -q "$Q" -q "Which warehouse got tea from harbour 14?" -n 12 -t 2 --json
(($(wc -l <<<"$OUT") == 1)) || die "--json: expected one line on stdout"
err_has '^  compressed \(30%\): '
python3 - "$OUT" "$ERR" <<'PY' || die "ask --json record"
import json, sys
j = json.loads(sys.argv[1])
assert j["command"] == "ask" and j["mode"] == "context" and abs(j["ratio_true"] - 0.3) < 0.005, j
assert 0 < j["kv_bytes_after"] < j["kv_bytes_before"] and j["seconds"]["prefill"] > 0, j
a = j["answers"]
assert [x["question"] for x in a] == ["How many crates did warehouse 45 receive?",
                                      "Which warehouse got tea from harbour 14?"], a
printed = [l.split("  compressed (30%): ", 1)[1].rsplit("   (", 1)[0]
           for l in sys.argv[2].splitlines() if "  compressed (30%): " in l]
assert printed == [x["answer"].replace("\n", " ") for x in a], (printed, a)
assert all(x["n_tokens"] >= 1 and x["ms_per_token"] >= 0 for x in a), a
PY
# --json on ask --load.
expect_ok ask -m "$MODEL" --load "$TMP/c.kvz" -q "$Q" -n 12 -t 2 --json
python3 -c 'import json,sys; j=json.loads(sys.argv[1]); assert j["mode"]=="load" and len(j["answers"])==1 and j["kv_bytes"]>0, j' "$OUT" \
    || die "ask --load --json record"

# The demo's headline: right answers first, exact matches beside them.
expect_ok demo -m "$MODEL" --records 8 -n 24 -t 2
out_has '^answers containing the expected fact: compressed [0-9]/8, full cache [0-9]/8; identical to the full cache: [0-9]/8$'
out_has '^  expected fact:     .*   \[compressed: (yes|no), full cache: (yes|no)\]$'
echo "$NAME: ok"

#!/usr/bin/env bash
# `kvzip chat`: compress -> ask --load -> chat --load end to end, piped. Turns are kept (the
# positions grow and the cache saved with /save holds them; --no-history keeps nothing),
# /reset returns to the compressed context, /save writes a file `ask --load` answers from,
# an unknown /command is an error that does not end the session, flags that do not apply are
# refused, end of input exits 0; `chat --context` compresses first.
source "$(dirname "$0")/lib.sh"
need_model
write_doc 12 "$TMP/doc.txt"
expect_ok compress -m "$MODEL" --context "$TMP/doc.txt" -o "$TMP/c.kvz" --ratio 0.5 -t 2
expect_ok ask -m "$MODEL" --load "$TMP/c.kvz" -q "$Q" -n 12 -t 2
ask_answer="$(answer_after '  answer: ')"

# chat() STDIN ARGS...: runs chat with that input.
chat() {
    local input="$1"; shift
    set +e
    printf '%b' "$input" | "$KVZIP" chat -m "$MODEL" -t 2 -n 12 "$@" >"$TMP/stdout" 2>"$TMP/stderr"
    RC=$?
    set -e
    OUT="$(cat "$TMP/stdout")"
    ERR="$(cat "$TMP/stderr")"
}
positions() { grep -E '; positions [0-9]+ of' <<<"$OUT" | sed -E 's/.*; positions ([0-9]+) of.*/\1/' | sed -n "${1}p"; }

chat "/stats\n$Q\nAnd which harbour did those crates come from?\n/stats\n/bogus\n/save $TMP/turns.kvz\n/reset\n/stats\n" \
    --load "$TMP/c.kvz"
((RC == 0)) || die "chat exited $RC"
grep -qE "^chat over $TMP/c.kvz: [0-9]+ context tokens, (49\.[5-9]|50\.0)% of context pairs kept" <<<"$ERR" \
    || die "no session header"
first="$(sed -n 2p <<<"$OUT")"
[[ "$first" == "$ask_answer" ]] || die "the first turn '$first' differs from ask --load's '$ask_answer'"
p0="$(positions 1)" p2="$(positions 2)" p3="$(positions 3)"
((p2 > p0)) || die "positions did not grow with two kept turns: $p0 -> $p2"
((p3 == p0)) || die "/reset gave $p3 positions, the compressed context has $p0"
out_has '; 2 turns kept$'
out_has "^saved $TMP/turns.kvz \(2 turns kept, $p2 positions\)$"
out_has '^reset: back to the compressed context'
err_has "^kvzip: error: unknown command '/bogus' \(/help lists them\)$"
err_has '^  \([0-9]+ tokens, [0-9.]+ ms to first token, [0-9.]+ ms/token\)$'

# The saved session is a context file ask --load reads (its turns included).
expect_ok ask -m "$MODEL" --load "$TMP/turns.kvz" -q "$Q" -n 12 -t 2
out_has '^  answer: '

# --no-history: nothing is kept, every answer is ask --load's.
chat "$Q\n$Q\n/stats\n" --load "$TMP/c.kvz" --no-history
((RC == 0)) || die "chat --no-history exited $RC"
[[ "$(sed -n 1p <<<"$OUT")" == "$ask_answer" && "$(sed -n 2p <<<"$OUT")" == "$ask_answer" ]] \
    || die "--no-history answers differ from ask --load's"
((  "$(positions 1)" == p0 )) || die "--no-history kept something"
out_has '; 0 turns kept$'

# Flags that do not apply, and a missing source.
expect_error '--ratio does not apply to `chat --load`: it shapes a compression' \
    chat -m "$MODEL" --load "$TMP/c.kvz" --ratio 0.2
expect_error '--json does not apply to `chat --load`' chat -m "$MODEL" --load "$TMP/c.kvz" --json
expect_error 'chat: give --load FILE .* or --context FILE' chat -m "$MODEL"

# --context compresses first; end of input ends the session with status 0.
chat "$Q\n" --context "$TMP/doc.txt" --ratio 0.5
((RC == 0)) || die "chat --context exited $RC"
grep -qE '^kvzip scoring|kept (49\.[5-9]|50\.0)% of context pairs' <<<"$OUT$ERR" || die "no compression lines"
echo "$NAME: ok"

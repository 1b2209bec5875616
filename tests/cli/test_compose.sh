#!/usr/bin/env bash
# `ask --load a.kvz --load b.kvz`: one question over two separately compressed contexts,
# composed (docs/composition.md); --save writes the composed context, which answers alone the
# same; flags that act on one context are refused with the way to do it.
source "$(dirname "$0")/lib.sh"
need_model
write_doc 12 "$TMP/a.txt"
for i in $(seq 1 10); do
    echo "Note $i: the ferry from island $((i * 3)) carried $((i * 11 % 89)) bicycles to pier $((i + 60))."
done >"$TMP/b.txt"
expect_ok compress -m "$MODEL" --context "$TMP/a.txt" -o "$TMP/a.kvz" --ratio 0.5 -t 2
expect_ok compress -m "$MODEL" --context "$TMP/b.txt" -o "$TMP/b.kvz" --ratio 0.5 -t 2
QB="How many bicycles went to pier 65?"

expect_ok ask -m "$MODEL" --load "$TMP/a.kvz" --load "$TMP/b.kvz" -q "$Q" -q "$QB" -n 10 -t 2 --save "$TMP/ab.kvz"
out_has "^  $TMP/a.kvz: [0-9]+ context tokens from position [0-9]+, .* \((49\.[5-9]|50\.0)% of context pairs kept\)$"
out_has "^  $TMP/b.kvz: [0-9]+ context tokens from position [0-9]+, "
out_has '^composed 2 contexts: [0-9]+ context tokens over [0-9]+ positions, KV cache [0-9.]+ [KM]iB \(f16, (49\.[5-9]|50\.0)% of context pairs kept\); read in [0-9.]+ s, composed in [0-9.]+ s$'
out_has "^saved $TMP/ab.kvz$"
out_has '^Q2: How many bicycles went to pier 65\?$'
out_has '^  answer: .*   \([0-9.]+ ms to first token, [0-9.]+ ms/token\)$'
# b starts where a's tokens end: a's position count equals b's start.
n_a="$(grep -E "^  $TMP/a.kvz:" <<<"$OUT" | sed -E 's/.*: ([0-9]+) context tokens from position ([0-9]+),.*/\1 \2/')"
start_b="$(grep -E "^  $TMP/b.kvz:" <<<"$OUT" | sed -E 's/.*from position ([0-9]+),.*/\1/')"
read -r tok_a start_a <<<"$n_a"
((start_b == start_a + tok_a)) || die "b starts at $start_b, expected $start_a + $tok_a"
composed1="$(answer_after '  answer: ')"

# The saved composed context answers alone exactly as composed on the fly (greedy).
expect_ok ask -m "$MODEL" --load "$TMP/ab.kvz" -q "$Q" -n 10 -t 2
[[ "$(answer_after '  answer: ')" == "$composed1" ]] || die "the saved composed context answers differently"
# The order matters to positions, not to the rule: b then a works too.
expect_ok ask -m "$MODEL" --load "$TMP/b.kvz" --load "$TMP/a.kvz" -q "$Q" -n 10 -t 2 --json
out_has '"mode":"compose"'
out_has '"files":\['

# Per-file flags are refused, saying how to get there.
expect_error '--ratio does not apply to ask over several --load files: it acts on one context; prepare each file first' \
    ask -m "$MODEL" --load "$TMP/a.kvz" --load "$TMP/b.kvz" --ratio 0.2 -q "$Q" -t 2
expect_error '--compare-full does not apply to ask over several --load files' \
    ask -m "$MODEL" --load "$TMP/a.kvz" --load "$TMP/b.kvz" --compare-full -q "$Q" -t 2
expect_error 'give questions \(-q\), or --save FILE' ask -m "$MODEL" --load "$TMP/a.kvz" --load "$TMP/b.kvz" -t 2
echo "$NAME: ok"

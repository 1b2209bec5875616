#!/usr/bin/env bash
# The context-length rule: positions are reserved only for what the method runs after the
# context (KVzip: its repeat prompt and a chunk that shrinks near the window, down to 128
# tokens; nothing for single-pass methods). A small -c/--ctx window keeps the test short:
# a document that the old rule (always ~2,064 positions for a 2,000-token chunk) refused at
# this window is accepted now.
source "$(dirname "$0")/lib.sh"
need_model
write_doc 40 "$TMP/doc.txt"
expect_ok compress -m "$MODEL" --context "$TMP/doc.txt" -o "$TMP/k.kvz" --method knorm --json -t 2
read -r n_ctx n_sys < <(python3 -c 'import json,sys; j=json.loads(sys.argv[1]); print(j["n_ctx"], j["n_sys"])' "$OUT")
full=$((n_sys + n_ctx))
min=600
((SANITIZED)) && min=200  # write_doc's shorter document
((n_ctx > min)) || die "document of $n_ctx tokens, expected more than $min"

# KVzip with 200 positions to spare: the old rule needed 2,064; now the chunk shrinks to fit.
w=$((full + 200))
expect_ok ask -m "$MODEL" --context "$TMP/doc.txt" -c "$w" -q "$Q" -n 8 -t 2
out_has '^kvzip scoring .* kept (29\.[5-9]|30\.0)% of context pairs$'
out_has '^  compressed \(30%\): '
# The same through compress, with an explicit chunk larger than the room.
expect_ok compress -m "$MODEL" --context "$TMP/doc.txt" -c "$w" -o "$TMP/c.kvz" --param chunk=1000 -t 2
# 100 positions are too few even for the smallest chunk: refused before any prefill, saying why.
w=$((full + 100))
expect_error "the context has $n_ctx tokens \(\+$n_sys system prompt\); kvzip scoring needs [0-9]+ positions with its repeat pass \(its prompt and a chunk of at least 128 tokens after the context\), more than the window of $w tokens \(-c/--ctx\)" \
    ask -m "$MODEL" --context "$TMP/doc.txt" -c "$w" -q "$Q" -n 8 -t 2
[[ "$ERR" != *prefill* ]] || die "refused only after prefilling"
# A method without a repeat pass needs nothing after the context, only room for the answer.
expect_ok ask -m "$MODEL" --context "$TMP/doc.txt" -c "$w" --method snapkv -q "$Q" -n 8 -t 2
out_has '^snapkv scoring .* kept (29\.[5-9]|30\.0)% of context pairs$'
w=$((full + 30))
expect_error 'answering needs [0-9]+ more positions \(the longest question and -n answer tokens\), more than the window' \
    ask -m "$MODEL" --context "$TMP/doc.txt" -c "$w" --method snapkv -q "$Q" -n 40 -t 2
expect_ok compress -m "$MODEL" --context "$TMP/doc.txt" -c "$full" --method snapkv -o "$TMP/s.kvz" -t 2
expect_error "the context has $n_ctx tokens \(\+$n_sys system prompt\), more than the window of $((full - 1)) tokens" \
    compress -m "$MODEL" --context "$TMP/doc.txt" -c "$((full - 1))" --method snapkv -o "$TMP/s.kvz" -t 2
# The rule is in --help.
expect_ok ask --help
out_has 'Context length: the context must fit the window'
echo "$NAME: ok"

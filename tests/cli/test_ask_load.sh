#!/usr/bin/env bash
# `ask --load FILE`: answers from the compressed cache only; --compare-full needs a file with
# the full cache; --ratio below the saved one re-prunes from the saved scores (and equals a
# compression made at that ratio), above it needs the full cache; --kv-type converts; another
# --method needs the context text; --context with --load is an error.
source "$(dirname "$0")/lib.sh"
need_model
write_doc 30 "$TMP/doc.txt"
expect_ok compress -m "$MODEL" --context "$TMP/doc.txt" -o "$TMP/c30.kvz" --ratio 0.3 -t 2
expect_ok compress -m "$MODEL" --context "$TMP/doc.txt" -o "$TMP/c10.kvz" --ratio 0.1 -t 2
expect_ok compress -m "$MODEL" --context "$TMP/doc.txt" -o "$TMP/f30.kvz" --ratio 0.3 -t 2 --retain-full

# The compressed cache only, by default.
expect_ok ask -m "$MODEL" --load "$TMP/c30.kvz" -q "$Q" -n 12 -t 2
out_has "^loaded $TMP/c30.kvz: [0-9]+ context tokens, KV cache .* \(compressed: (29\.[5-9]|30\.0)% of context pairs kept, kvzip pair\)"
out_has '^Q1: How many crates did warehouse 45 receive\?$'
out_has '^  answer: .*   \([0-9.]+ ms/token\)$'
out_lacks 'full cache'
a30="$(answer_after '  answer: ')"

expect_error "--compare-full needs the full cache, and $TMP/c30.kvz holds only the compressed one" \
    ask -m "$MODEL" --load "$TMP/c30.kvz" -q "$Q" -n 12 -t 2 --compare-full

# A --retain-full file: pruned to its saved ratio at load, the same answer as the compressed file.
expect_ok ask -m "$MODEL" --load "$TMP/f30.kvz" -q "$Q" -n 12 -t 2
out_has '^pruned to ratio 0.3 \(pair level\) from the saved scores: kept (29\.[5-9]|30\.0)% of context pairs'
[[ "$(answer_after '  answer: ')" == "$a30" ]] || die "the --retain-full file pruned at load answers differently"
expect_ok ask -m "$MODEL" --load "$TMP/f30.kvz" -q "$Q" -n 12 -t 2 --compare-full
out_has '^  full cache:        '
out_has '^  compressed \(30%\): .*   \[(same|differs)\]   \([0-9.]+ ms/token\)$'
out_has '^answers identical to the full cache: [01]/1$'
[[ "$(answer_after '  compressed (30%): ')" == "$a30" ]] || die "--compare-full's compressed answer differs"

# Lower ratio: re-pruned from the saved scores, exactly as compressing at 0.1 (pair level).
expect_ok ask -m "$MODEL" --load "$TMP/c10.kvz" -q "$Q" -n 12 -t 2
a10="$(answer_after '  answer: ')"
expect_ok ask -m "$MODEL" --load "$TMP/c30.kvz" --ratio 0.1 -q "$Q" -n 12 -t 2 --save "$TMP/r10.kvz"
out_has '^pruned to ratio 0.1 \(pair level\) from the saved scores: kept (9\.[5-9]|10\.0)% of context pairs, KV cache .* -> .* in [0-9.]+ s$'
[[ "$(answer_after '  answer: ')" == "$a10" ]] || die "re-pruned to 0.1: '$(answer_after '  answer: ')' != '$a10'"
[[ -s "$TMP/r10.kvz" ]] || die "--save wrote no re-pruned file"
expect_ok ask -m "$MODEL" --load "$TMP/r10.kvz" -q "$Q" -n 12 -t 2
out_has '\(compressed: (9\.[5-9]|10\.0)% of context pairs kept, kvzip pair\)'
[[ "$(answer_after '  answer: ')" == "$a10" ]] || die "the saved re-pruned file answers differently"

# Higher ratio: only from a full cache.
expect_error '--ratio 0.5: .*c30.kvz holds only the compressed cache \((29\.[5-9]|30\.0)% of the context pairs kept\); a higher ratio needs the full cache: save it with `kvzip compress --retain-full`' \
    ask -m "$MODEL" --load "$TMP/c30.kvz" --ratio 0.5 -q "$Q" -n 12 -t 2
expect_ok ask -m "$MODEL" --load "$TMP/f30.kvz" --ratio 0.5 -q "$Q" -n 12 -t 2
out_has '^pruned to ratio 0.5 \(pair level\) from the saved scores: kept (49\.[5-9]|50\.0)% of context pairs'

# --kv-type converts the loaded rows.
expect_ok ask -m "$MODEL" --load "$TMP/c30.kvz" --kv-type q8_0 -q "$Q" -n 12 -t 2
out_has '^converted the KV cache to q8_0: [0-9.]+ [KM]iB -> [0-9.]+ [KM]iB \(approximate: the file.s rows were computed in f16\)$'
out_has '^  answer: '

# --method: the saved one is fine, another needs the context text.
expect_ok ask -m "$MODEL" --load "$TMP/c30.kvz" --method kvzip -q "$Q" -n 12 -t 2
expect_error '--method snapkv: .*c30.kvz was compressed with kvzip; another method scores the context again, which needs the context text: `kvzip compress --context FILE --method snapkv -o FILE`' \
    ask -m "$MODEL" --load "$TMP/c30.kvz" --method snapkv -q "$Q" -t 2
expect_error '--context does not apply to `ask --load`: --load answers from the saved context' \
    ask -m "$MODEL" --load "$TMP/c30.kvz" --context "$TMP/doc.txt" -q "$Q" -t 2
expect_error 'ask --load: give questions \(-q\), or --save FILE' ask -m "$MODEL" --load "$TMP/c30.kvz" -t 2
echo "$NAME: ok"

#!/usr/bin/env bash
# No silent flags: a flag that does not apply to the chosen mode is an error naming the flag
# and why (one shared check, tools/cli/common.h check_flags), before anything slow runs.
source "$(dirname "$0")/lib.sh"
need_model
write_doc 30 "$TMP/doc.txt"
expect_ok compress -m "$MODEL" --context "$TMP/doc.txt" -o "$TMP/c.kvz" --ratio 0.3 -t 2
L=(ask -m "$MODEL" --load "$TMP/c.kvz" -q "$Q" -t 2)
C=(ask -m "$MODEL" --context "$TMP/doc.txt" -q "$Q" -t 2)
K=(compress -m "$MODEL" --context "$TMP/doc.txt" -o "$TMP/x.kvz" -t 2)

# ask --load: what acts while prefilling or scoring has nothing to act on.
expect_error '--param does not apply to `ask --load`: method parameters act while scoring' "${L[@]}" --param chunk=100
expect_error '--query-aware does not apply to `ask --load`: query-aware scoring needs the context text' "${L[@]}" --query-aware
expect_error '--threshold does not apply to `ask --load`: KVzap' "${L[@]}" --threshold -4
expect_error '--batch does not apply to `ask --load`' "${L[@]}" --batch 64
expect_error '--retain-full does not apply to `ask --load`' "${L[@]}" --retain-full
expect_error '--level does not apply to `ask --load`: it shapes a pruning, and without --ratio' "${L[@]}" --level adakv
expect_error '--head-scores does not apply to `ask --load`' "${L[@]}" --head-scores "$TMP/h.kvzh"
expect_error '-n does not apply to `ask --load`: it sets the answer length, and no questions' \
    ask -m "$MODEL" --load "$TMP/c.kvz" --save "$TMP/y.kvz" -n 5 -t 2
# ... and with --ratio a pruning happens, so --level applies (pair-uniform within the kept pairs).
expect_ok "${L[@]}" -n 4 --ratio 0.2 --level pair-uniform
out_has '^pruned to ratio 0.2 \(pair-uniform level\) from the saved scores'

# Compressing from text: options of another method or level.
expect_error '--threshold does not apply to `kvzip compress`: --threshold is KVzap.s streaming eviction; give --method kvzap' \
    "${K[@]}" --threshold -4
expect_error '--window does not apply to `kvzip compress`' "${K[@]}" --window 16
expect_error '--ratio does not apply to `kvzip compress`: with --threshold, KVzap keeps the pairs scored above it' \
    "${K[@]}" --method kvzap --threshold -4 --ratio 0.2
expect_error '--ada-alpha does not apply to `kvzip compress`: it is adakv.s safeguard; the level here is pair' \
    "${K[@]}" --ada-alpha 0.5
expect_ok "${K[@]}" --level adakv --ada-alpha 0.5 --ratio 0.3
expect_error '--head-scores does not apply to `kvzip compress`: head scores select whole heads' "${K[@]}" --head-scores "$TMP/h.kvzh"
expect_error '--strict-threshold does not apply to `kvzip compress`: .*the level here is pair-uniform' \
    "${K[@]}" --method snapkv --strict-threshold
expect_error '--compress-for does not apply to `kvzip compress`: kvzip scores do not depend on a question' \
    "${K[@]}" --compress-for "$Q"
expect_error '--query-aware does not apply to `ask --context`: kvzip scores do not depend on a question' \
    "${C[@]}" --query-aware
expect_error '--retain-full does not apply to `ask --context`: only a saved file keeps the full cache; give --save FILE' \
    "${C[@]}" --retain-full
expect_error '--compare-full does not apply to `ask` without questions' \
    ask -m "$MODEL" --context "$TMP/doc.txt" --save "$TMP/z.kvz" --compare-full -t 2
expect_error '--retain-full does not apply to `kvzip demo`: the demo saves nothing' demo -m "$MODEL" --retain-full
echo "$NAME: ok"

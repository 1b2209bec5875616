#!/usr/bin/env bash
# Pull names wherever -m is taken: resolved through the model cache (scripts/models.tsv, the
# folder scripts/pull-model.sh fills); a missing model's error prints the exact command that
# fetches it, found from the binary's own location or the repository it was built from.
source "$(dirname "$0")/lib.sh"
need_model
REPO="$(cd "$(dirname "$0")/../.." && pwd)"

expect_ok info smollm2-135m
out_has "^file: +$MODEL "
out_has '^architecture: +llama$'
expect_ok generate -m smollm2-135m -p "The capital of France is" -n 2 -t 2
write_doc 10 "$TMP/doc.txt"
expect_ok compress -m smollm2-135m --context "$TMP/doc.txt" -o "$TMP/c.kvz" -t 2
expect_ok ask -m smollm2-135m --load "$TMP/c.kvz" -q "$Q" -n 4 -t 2
out_has '^  answer: '

# Not cached: the error prints the command, and the command names a script that exists.
mkdir -p "$TMP/empty"
KVZ_MODELS_DIR="$TMP/empty" expect_error "^kvzip: error: model 'smollm2-135m' is not in the model cache \($TMP/empty/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf is missing\); fetch it with:$" \
    info smollm2-135m
cmd="$(sed -n '2p' <<<"$ERR")"
[[ "$cmd" == "  $REPO/scripts/pull-model.sh smollm2-135m" ]] || die "pull command '$cmd'"
[[ -x "${cmd:2:${#cmd}-15}" ]] || die "the printed script '${cmd:2:${#cmd}-15}' is not executable"
KVZ_MODELS_DIR="$TMP/empty" expect_error "^kvzip: error: model 'qwen2.5-coder-0.5b' is not in the model cache" \
    ask -m qwen2.5-coder-0.5b --context "$TMP/doc.txt" -q "$Q"
err_has "^  $REPO/scripts/pull-model.sh qwen2.5-coder-0.5b$"
# The default model missing: the same command.
KVZ_MODELS_DIR="$TMP/empty" expect_error '^kvzip: error: the default model smollm2-135m is not in the model cache' \
    generate -p hello -n 2
err_has "^  $REPO/scripts/pull-model.sh smollm2-135m$"
KVZ_MODELS_DIR="$TMP/empty" expect_error '^kvzip: error: the default model smollm2-135m' ask --context "$TMP/doc.txt" -q "$Q"
# Neither a path nor a pull name.
expect_error "^kvzip: error: no-such-model: no such file or folder, and not a pull name of $REPO/scripts/models.tsv \(pull names: smollm2-135m, gemma3-270m, qwen2.5-coder-0.5b, qwen2.5-coder-1.5b\)$" \
    info no-such-model

# A copy of the binary with scripts/ beside it (as installed) finds that registry first.
mkdir -p "$TMP/inst/bin" "$TMP/inst/share/kvzip/scripts" "$TMP/models"
cp "$KVZIP" "$TMP/inst/bin/kvzip"
cp "$REPO/scripts/pull-model.sh" "$TMP/inst/share/kvzip/scripts/"
printf 'tiny-test\tpkg==1.0\ttiny.gguf\t%064d\t10\tllama\tQ8_0\ta registry of this test only\n' 0 \
    >"$TMP/inst/share/kvzip/scripts/models.tsv"
KVZIP="$TMP/inst/bin/kvzip" KVZ_MODELS_DIR="$TMP/models" expect_error "^kvzip: error: model 'tiny-test' is not in the model cache \($TMP/models/tiny-test/tiny.gguf is missing\)" \
    info tiny-test
err_has "^  $TMP/inst/share/kvzip/scripts/pull-model.sh tiny-test$"
echo "$NAME: ok"

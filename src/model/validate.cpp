#include "model/validate.h"

#include <cmath>

#include "core/error.h"

namespace kvz {

namespace {

// A float field and the rule it must meet; `what` completes "expected ...".
struct FloatRule {
  const char* what;
  bool (*ok)(double);
};
constexpr FloatRule kPositive{"a finite number > 0", [](double x) { return std::isfinite(x) && x > 0; }};
constexpr FloatRule kNonNegative{"a finite number >= 0", [](double x) { return std::isfinite(x) && x >= 0; }};
constexpr FloatRule kAboveOne{"a finite number > 1", [](double x) { return std::isfinite(x) && x > 1; }};
constexpr FloatRule kAtLeastOne{"a finite number >= 1", [](double x) { return std::isfinite(x) && x >= 1; }};

// HParams fields are floats: printed as floats ("-1e-05", not the double it widens to).
void check(const TensorSource& f, const std::string& key, float v, const FloatRule& rule) {
  if (!rule.ok(v)) fail("{} = {}, expected {}", f.key_origin(key), v, rule.what);
}
void check(const TensorSource& f, const std::string& key, double v, const FloatRule& rule) {
  if (!rule.ok(v)) fail("{} = {}, expected {}", f.key_origin(key), v, rule.what);
}

void check_structure(const HParams& hp, const TensorSource& f, const std::string& a) {
  auto positive = [&](const char* key, int64_t v) {
    if (v <= 0) fail("{} = {}, expected a positive count", f.key_origin(a + key), v);
  };
  positive("block_count", hp.n_layer);
  positive("embedding_length", hp.n_embd);
  positive("attention.head_count", hp.n_head);
  positive("attention.head_count_kv", hp.n_head_kv);
  positive("feed_forward_length", hp.n_ff);
  positive("context_length", hp.n_ctx_train);
  if (hp.n_head % hp.n_head_kv != 0)
    fail("{} = {} is not a multiple of the {} KV heads ('{}attention.head_count_kv')",
         f.key_origin(a + "attention.head_count"), hp.n_head, hp.n_head_kv, a);
  // The attention kernels work on heads of 8k dims, k <= 32.
  const std::string dk = a + "attention.key_length";
  if (hp.d_head <= 0 || hp.d_head % 8 != 0 || hp.d_head > 256) {
    if (f.has(dk)) fail("{} = {}, expected a multiple of 8 in [8, 256]", f.key_origin(dk), hp.d_head);
    fail("{}: head size {} = {} / {} ('{}embedding_length' / '{}attention.head_count') is not a multiple of 8 in "
         "[8, 256]", f.path(), hp.d_head, hp.n_embd, hp.n_head, a, a);
  }
  if (hp.rope_dim <= 0 || hp.rope_dim % 2 != 0 || hp.rope_dim > hp.d_head)
    fail("{} = {}, expected an even number of dims in [2, {}]", f.key_origin(a + "rope.dimension_count"),
         hp.rope_dim, hp.d_head);

  const std::string vk = a + "vocab_size";
  if (hp.n_vocab <= 0) fail("{} = {}, expected a positive count", f.key_origin(vk), hp.n_vocab);
}

void check_tensors(const HParams& hp, const Weights& w, const TensorSource& f) {
  for (const auto& [name, view] : {std::pair{"token_embd.weight", &w.tok_embd}, std::pair{"output.weight", &w.output}})
    if (view->n_out != hp.n_vocab || view->n_in != hp.n_embd)
      fail("{}: tensor '{}' has {} rows of {}, expected one row of {} per vocabulary entry ({})", f.path(), name,
           view->n_out, view->n_in, hp.n_embd, hp.n_vocab);
}

void check_floats(const HParams& hp, const TensorSource& f, const std::string& a) {
  check(f, a + "attention.layer_norm_rms_epsilon", hp.norm_eps, kPositive);
  check(f, a + "rope.freq_base", hp.rope_base, kAboveOne);

  // Rope scaling: the factor of linear scaling, the llama3 band limits (when the divisors
  // were computed from them rather than read as a tensor), and the divisors either way.
  const std::string scaling = f.get_str_opt(a + "rope.scaling.type").value_or("none");
  if (scaling == "linear") check(f, a + "rope.scaling.factor", hp.rope_linear_scale, kPositive);
  if (scaling == "llama3" && !f.tensor("rope_freqs.weight")) {
    // transformers' _compute_llama3_parameters: factor >= 1, 0 < low < high, context > 0.
    const std::string lk = a + "rope.scaling.low_freq_factor", hk = a + "rope.scaling.high_freq_factor";
    for (const char* k : {"rope.scaling.factor", "rope.scaling.low_freq_factor", "rope.scaling.high_freq_factor",
                          "rope.scaling.original_context_length"})
      if (!f.has(a + k)) fail("{}: rope scaling 'llama3' needs '{}{}' (or a rope_freqs.weight tensor)", f.path(), a, k);
    check(f, a + "rope.scaling.factor", f.get_float(a + "rope.scaling.factor"), kAtLeastOne);
    check(f, lk, f.get_float(lk), kPositive);
    check(f, hk, f.get_float(hk), kPositive);
    check(f, a + "rope.scaling.original_context_length", f.get_float(a + "rope.scaling.original_context_length"),
          kPositive);
    if (!(f.get_float(hk) > f.get_float(lk)))
      fail("{} = {}, expected more than low_freq_factor ({})", f.key_origin(hk), f.get_float(hk), f.get_float(lk));
  }
  check(f, a + "final_logit_softcapping", hp.logit_softcap, kNonNegative);
  if (const auto qs = f.get_float_opt(a + "attention.query_pre_attn_scalar"))
    check(f, a + "attention.query_pre_attn_scalar", *qs, kPositive);
  if (!kNonNegative.ok(hp.attn_scale))  // 0: the default 1 / sqrt(d_head)
    fail("{}: softmax scale {} (from the attention keys) is not a finite number >= 0", f.path(), hp.attn_scale);
}

void check_rope_divisors(const Weights& w, const TensorSource& f) {
  for (size_t i = 0; i < w.rope_freqs.size(); ++i)
    if (!kPositive.ok(w.rope_freqs[i]))
      fail("{}: rope frequency divisor {} ({}) = {}, expected {}", f.path(), i,
           f.tensor("rope_freqs.weight") ? "tensor 'rope_freqs.weight'" : "from the rope.scaling keys", w.rope_freqs[i],
           kPositive.what);
}

void check_sliding_window(const HParams& hp, const TensorSource& f, const std::string& a) {
  const std::string wk = a + "attention.sliding_window";
  if (hp.n_swa < 0) fail("{} = {}, expected a positive window", f.key_origin(wk), hp.n_swa);
  if (hp.swa_layers.empty()) return;
  if (hp.swa_layers.size() != static_cast<size_t>(hp.n_layer))
    fail("{}: {} per-layer sliding-window flags for {} layers", f.key_origin(a + "attention.sliding_window_pattern"),
         hp.swa_layers.size(), hp.n_layer);
  bool any_local = false;
  for (uint8_t x : hp.swa_layers) any_local = any_local || x != 0;
  if (!any_local) return;
  if (hp.n_swa <= 0) fail("{} = {}, expected a positive window for the sliding-window layers", f.key_origin(wk), hp.n_swa);
  check(f, a + "rope.freq_base_swa", hp.rope_base_swa, kAboveOne);
}

void check_vocab(const HParams& hp, const VocabData& v, const TensorSource& f, const std::string& a) {
  const int64_t n_tok = static_cast<int64_t>(v.tokens.size());
  if (n_tok > hp.n_vocab)
    fail("{}: the tokenizer has {} tokens but the model only {} embedding rows ({})", f.path(), n_tok, hp.n_vocab,
         f.key_origin(a + "vocab_size"));
  // Ids may point past the tokenizer's tokens into the embedding rows it does not name
  // (they become placeholder tokens), never past the rows.
  const bool hf = f.format() == "hf";
  struct Id {
    int32_t id;
    const char* gguf_key;
    const char* hf_source;
  };
  const Id ids[] = {{v.bos_id, "tokenizer.ggml.bos_token_id", "tokenizer.json / tokenizer_config.json \"bos_token\""},
                    {v.eos_id, "tokenizer.ggml.eos_token_id", "tokenizer.json / tokenizer_config.json \"eos_token\""},
                    {v.eot_id, "tokenizer.ggml.eot_token_id", "tokenizer.json"},
                    {v.unk_id, "tokenizer.ggml.unknown_token_id", "tokenizer.json \"model.unk_token\""},
                    {v.pad_id, "tokenizer.ggml.padding_token_id", "tokenizer_config.json \"pad_token\""}};
  for (const Id& s : ids)
    if (s.id < -1 || s.id >= hp.n_vocab)
      fail("{}: {} = {} is outside the vocabulary [0, {})", f.path(), hf ? s.hf_source : s.gguf_key, s.id, hp.n_vocab);
  for (int32_t id : v.eog_ids)
    if (id < 0 || id >= hp.n_vocab)
      fail("{}: end-of-generation id {} ({}) is outside the vocabulary [0, {})", f.path(), id,
           hf ? "generation_config.json \"eos_token_id\"" : "tokenizer.ggml.eom_token_id", hp.n_vocab);
}

}  // namespace

void validate_hparams(const HParams& hp, const TensorSource& f) {
  const std::string a = hp.arch + ".";
  check_structure(hp, f, a);
  check_floats(hp, f, a);
  check_sliding_window(hp, f, a);
}

void validate_weights(const HParams& hp, const Weights& w, const VocabData& vocab, const TensorSource& f) {
  check_tensors(hp, w, f);
  check_rope_divisors(w, f);
  check_vocab(hp, vocab, f, hp.arch + ".");
}

}  // namespace kvz

// Llama family (SmolLM2, Llama 2/3.x, TinyLlama): RMSNorm, RoPE (interleaved pairs, as
// GGUF's converter permutes q/k for llama), grouped-query attention, SwiGLU, tied or
// separate output head. Llama 3.x rope scaling arrives as the rope_freqs.weight tensor
// of per-dimension frequency divisors; linear scaling as rope.scaling.factor.
#include <cmath>

#include "core/error.h"
#include "model/loader_util.h"
#include "model/model.h"

namespace kvz {

namespace {

int checked_int(const TensorSource& f, const std::string& key, int64_t lo, int64_t hi) {
  const int64_t v = f.get_int(key);
  if (v < lo || v > hi) fail("{}: metadata '{}' = {} is outside [{}, {}]", f.path(), key, v, lo, hi);
  return static_cast<int>(v);
}

}  // namespace

void load_llama(const TensorSource& f, HParams& hp, Weights& w) {
  const std::string a = hp.arch + ".";
  hp.n_layer = checked_int(f, a + "block_count", 1, 1024);
  hp.n_embd = checked_int(f, a + "embedding_length", 8, 1 << 16);
  hp.n_head = checked_int(f, a + "attention.head_count", 1, 1024);
  hp.n_head_kv = f.has(a + "attention.head_count_kv") ? checked_int(f, a + "attention.head_count_kv", 1, 1024)
                                                        : hp.n_head;
  hp.n_ff = checked_int(f, a + "feed_forward_length", 1, 1 << 20);
  hp.n_ctx_train = checked_int(f, a + "context_length", 1, 1 << 24);
  hp.d_head = f.has(a + "attention.key_length") ? checked_int(f, a + "attention.key_length", 8, 256)
                                                : hp.n_embd / hp.n_head;
  if (hp.n_head % hp.n_head_kv != 0)
    fail("{}: {} attention heads are not a multiple of {} KV heads", f.path(), hp.n_head, hp.n_head_kv);
  if (hp.d_head % 8 != 0 || hp.d_head > 256)
    fail("{}: head size {} is not supported (multiple of 8, at most 256)", f.path(), hp.d_head);
  hp.norm_eps = static_cast<float>(f.get_float(a + "attention.layer_norm_rms_epsilon"));
  hp.rope_base = static_cast<float>(f.get_float_opt(a + "rope.freq_base").value_or(10000.0));
  hp.rope_dim = f.has(a + "rope.dimension_count") ? checked_int(f, a + "rope.dimension_count", 2, hp.d_head)
                                                  : hp.d_head;
  if (hp.rope_dim != hp.d_head)
    fail("{}: partial rotary embedding ({} of {} dims) is not supported", f.path(), hp.rope_dim, hp.d_head);
  // GGUF's converter permutes llama q/k rows so RoPE rotates adjacent pairs; HF keeps the
  // original rotate-half layout (transformers' GGUF loader undoes the permutation).
  hp.rope_style = f.format() == "hf" ? RopeStyle::Neox : RopeStyle::Interleaved;
  const std::string scaling = f.get_str_opt(a + "rope.scaling.type").value_or("none");
  if (scaling == "linear") {
    hp.rope_linear_scale = static_cast<float>(f.get_float(a + "rope.scaling.factor"));
    if (!(hp.rope_linear_scale > 0)) fail("{}: rope.scaling.factor must be positive", f.path());
  } else if (scaling != "none" && scaling != "llama3") {
    fail("{}: rope scaling '{}' is not supported for {}", f.path(), scaling, hp.arch);
  }

  // HF folders carry vocab_size (the embedding rows, possibly more than the tokenizer's
  // tokens); GGUF files carry the token list, one per embedding row.
  if (f.has("tokenizer.ggml.tokens")) {
    const int64_t n_tok = f.get_str_array("tokenizer.ggml.tokens").size();
    hp.n_vocab = static_cast<int>(f.get_int_opt(a + "vocab_size").value_or(n_tok));
    if (hp.n_vocab != n_tok)
      fail("{}: vocab_size {} differs from the {} tokenizer tokens", f.path(), hp.n_vocab, n_tok);
  } else {
    hp.n_vocab = checked_int(f, a + "vocab_size", 1, 1 << 24);
  }

  const int64_t d = hp.n_embd, dq = int64_t{hp.n_head} * hp.d_head, dkv = int64_t{hp.n_head_kv} * hp.d_head;
  w.tok_embd = weight_2d(f, "token_embd.weight", d, hp.n_vocab);
  w.output_norm = vec_f32(f, "output_norm.weight", d);
  w.output = weight_2d_opt(f, "output.weight", d, hp.n_vocab);
  hp.tied_embeddings = w.output.data == nullptr;
  if (hp.tied_embeddings) w.output = w.tok_embd;

  if (const GgufTensor* rf = f.tensor("rope_freqs.weight")) {
    const float* p = vec_f32(f, "rope_freqs.weight", hp.rope_dim / 2);
    (void)rf;
    w.rope_freqs.assign(p, p + hp.rope_dim / 2);
    hp.has_rope_freqs = true;
  }

  w.layers.resize(hp.n_layer);
  for (int il = 0; il < hp.n_layer; ++il) {
    const std::string p = "blk." + std::to_string(il) + ".";
    LayerWeights& l = w.layers[il];
    l.attn_norm = vec_f32(f, p + "attn_norm.weight", d);
    l.wq = weight_2d(f, p + "attn_q.weight", d, dq);
    l.wk = weight_2d(f, p + "attn_k.weight", d, dkv);
    l.wv = weight_2d(f, p + "attn_v.weight", d, dkv);
    l.wo = weight_2d(f, p + "attn_output.weight", dq, d);
    l.ffn_norm = vec_f32(f, p + "ffn_norm.weight", d);
    l.w_gate = weight_2d(f, p + "ffn_gate.weight", d, hp.n_ff);
    l.w_up = weight_2d(f, p + "ffn_up.weight", d, hp.n_ff);
    l.w_down = weight_2d(f, p + "ffn_down.weight", hp.n_ff, d);
  }
}

// HF: LlamaForCausalLM (SmolLM2, Llama 2/3 without llama3 rope scaling) uses the common
// names as they are.
HfNames hf_names_llama() { return {{"llama"}, {}, {}, false}; }

}  // namespace kvz

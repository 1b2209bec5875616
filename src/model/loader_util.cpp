#include "model/loader_util.h"

#include <cmath>
#include <cstdint>

#include "core/error.h"

namespace kvz {

namespace {
std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}
}  // namespace

WeightView weight_2d_opt(const TensorSource& f, const std::string& name, int64_t n_in, int64_t n_out) {
  const GgufTensor* t = f.tensor(name);
  if (!t) return {};
  if (t->shape.size() != 2 || t->shape[0] != n_in || t->shape[1] != n_out)
    fail("{}: tensor '{}' has shape {}, expected [{}, {}]", f.path(), name, shape_str(t->shape), n_in, n_out);
  if (!type_info(t->type).supported)
    fail("{}: tensor '{}' has type {}, which kvzip cannot compute with yet", f.path(), name, type_name(t->type));
  return WeightView{t->type, n_in, n_out, t->data};
}

WeightView weight_2d(const TensorSource& f, const std::string& name, int64_t n_in, int64_t n_out) {
  WeightView w = weight_2d_opt(f, name, n_in, n_out);
  if (!w.data) fail("{}: required tensor '{}' is missing", f.path(), name);
  return w;
}

const float* vec_f32_opt(const TensorSource& f, const std::string& name, int64_t n) {
  const GgufTensor* t = f.tensor(name);
  if (!t) return nullptr;
  if (t->shape.size() != 1 || t->shape[0] != n)
    fail("{}: tensor '{}' has shape {}, expected [{}]", f.path(), name, shape_str(t->shape), n);
  if (t->type != DType::F32) fail("{}: tensor '{}' has type {}, expected f32", f.path(), name, type_name(t->type));
  if (reinterpret_cast<uintptr_t>(t->data) % alignof(float) != 0)
    fail("{}: tensor '{}' is not 4-byte aligned", f.path(), name);
  return reinterpret_cast<const float*>(t->data);
}

const float* vec_f32(const TensorSource& f, const std::string& name, int64_t n) {
  const float* p = vec_f32_opt(f, name, n);
  if (!p) fail("{}: required tensor '{}' is missing", f.path(), name);
  return p;
}

namespace {

int checked_int(const TensorSource& f, const std::string& key, int64_t lo, int64_t hi) {
  const int64_t v = f.get_int(key);
  if (v < lo || v > hi) fail("{} = {} is outside [{}, {}]", f.key_origin(key), v, lo, hi);
  return static_cast<int>(v);
}

}  // namespace

std::vector<float> llama3_rope_divisors(const TensorSource& f, const std::string& a, double base, int rope_dim) {
  // Llama 3.1's rule: a frequency whose wavelength is shorter than the original context /
  // high_freq_factor is kept, one longer than original context / low_freq_factor is divided
  // by factor, and the band between is interpolated in 1/divisor. GGUF files carry the
  // result as rope_freqs.weight; HF configs carry these four numbers.
  auto need = [&](const std::string& k) {
    const auto v = f.get_float_opt(a + k);
    if (!v) fail("{}: rope scaling 'llama3' needs '{}{}' (or a rope_freqs.weight tensor)", f.path(), a, k);
    return *v;
  };
  // Their values are checked with the other hyper-parameters (model/validate.cpp); out of
  // range they give divisors that validate refuses too, never a crash here.
  const double factor = need("rope.scaling.factor"), lo = need("rope.scaling.low_freq_factor"),
               hi = need("rope.scaling.high_freq_factor"), ctx = need("rope.scaling.original_context_length");
  constexpr double kTwoPi = 6.283185307179586;
  std::vector<float> div(rope_dim / 2);
  for (int i = 0; i < rope_dim / 2; ++i) {
    const double freq = std::pow(base, -2.0 * i / rope_dim), wavelen = kTwoPi / freq;
    if (wavelen < ctx / hi) {
      div[i] = 1.0f;
    } else if (wavelen > ctx / lo) {
      div[i] = static_cast<float>(factor);
    } else {
      const double smooth = (ctx / wavelen - lo) / (hi - lo);
      div[i] = static_cast<float>(1.0 / ((1.0 - smooth) / factor + smooth));
    }
  }
  return div;
}

void read_decoder_hparams(const TensorSource& f, HParams& hp) {
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
  hp.norm_eps = static_cast<float>(f.get_float(a + "attention.layer_norm_rms_epsilon"));
  hp.rope_base = static_cast<float>(f.get_float_opt(a + "rope.freq_base").value_or(10000.0));
  hp.rope_dim = f.has(a + "rope.dimension_count") ? checked_int(f, a + "rope.dimension_count", 2, hp.d_head)
                                                  : hp.d_head;
  if (hp.rope_dim != hp.d_head)
    fail("{}: partial rotary embedding ({} of {} dims) is not supported", f.path(), hp.rope_dim, hp.d_head);
  const std::string scaling = f.get_str_opt(a + "rope.scaling.type").value_or("none");
  if (scaling == "linear") {
    hp.rope_linear_scale = static_cast<float>(f.get_float(a + "rope.scaling.factor"));
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
}

void load_decoder_weights(const TensorSource& f, HParams& hp, Weights& w) {
  const std::string a = hp.arch + ".";
  const std::string scaling = f.get_str_opt(a + "rope.scaling.type").value_or("none");
  const int64_t d = hp.n_embd, dq = int64_t{hp.n_head} * hp.d_head, dkv = int64_t{hp.n_head_kv} * hp.d_head;
  w.tok_embd = weight_2d(f, "token_embd.weight", d, hp.n_vocab);
  w.output_norm = vec_f32(f, "output_norm.weight", d);
  w.output = weight_2d_opt(f, "output.weight", d, hp.n_vocab);
  hp.tied_embeddings = w.output.data == nullptr;
  if (hp.tied_embeddings) w.output = w.tok_embd;

  if (f.tensor("rope_freqs.weight")) {
    const float* p = vec_f32(f, "rope_freqs.weight", hp.rope_dim / 2);
    w.rope_freqs.assign(p, p + hp.rope_dim / 2);
    hp.has_rope_freqs = true;
  } else if (scaling == "llama3") {
    w.rope_freqs = llama3_rope_divisors(f, a, hp.rope_base, hp.rope_dim);
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

}  // namespace kvz

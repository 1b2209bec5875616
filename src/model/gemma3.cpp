// Gemma 3 (text): the llama tensor layout plus
//  - token embeddings scaled by sqrt(n_embd) (f32, as llama.cpp; HF rounds the factor to bf16),
//  - RMSNorm of the attention and FFN outputs before each residual add (post_attention_norm,
//    post_ffw_norm) and per-head q/k RMSNorm before RoPE,
//  - GeGLU with the tanh GELU, NeoX RoPE, tied output,
//  - sliding-window local layers: every n-th layer (n = attention.sliding_window_pattern,
//    default 6, or that key as an array of per-layer flags) is global, the others see the
//    last attention.sliding_window positions and rotate with their own base
//    (rope.freq_base_swa, default 10000; no linear scaling).
// Norm weights: HF's Gemma3RMSNorm computes x * (1 + w); llama.cpp's converter
// (conversion/gemma.py, norm_shift) stores 1 + w in the GGUF, so the file's weights are used
// as they are (gemma-3-270m: attn_norm weights range 7.4 .. 62.5, i.e. already shifted).
// Reference for every rule here: llama.cpp src/models/gemma3.cpp (llama-cpp-python 0.3.36).
#include <cmath>
#include <variant>

#include "core/error.h"
#include "model/loader_util.h"
#include "model/model.h"

namespace kvz {

void hparams_gemma3(const TensorSource& f, HParams& hp) {
  read_decoder_hparams(f, hp);  // shared keys: sizes, eps, rope base and scaling
  const std::string a = hp.arch + ".";
  hp.rope_style = RopeStyle::Neox;
  hp.ffn_act = FfnAct::GeluTanh;
  hp.embd_scale = std::sqrt(static_cast<float>(hp.n_embd));
  hp.post_norms = true;
  hp.qk_norm = true;
  hp.logit_softcap = static_cast<float>(f.get_float_opt(a + "final_logit_softcapping").value_or(0.0));
  // Softmax scale: gemma_pytorch uses query_pre_attn_scalar^-0.5, which GGUF does not store;
  // it equals head_dim for every size but 27B (62 layers), where it is n_embd / n_head
  // (llama.cpp gemma3.cpp, f_attention_scale).
  hp.attn_scale = hp.n_layer == 62 ? 1.0f / std::sqrt(static_cast<float>(hp.n_embd / hp.n_head))
                                   : 1.0f / std::sqrt(static_cast<float>(hp.d_head));
  // HF configs state it (hf_names_gemma3 maps query_pre_attn_scalar here): use it as given.
  if (const auto qs = f.get_float_opt(a + "attention.query_pre_attn_scalar"))
    hp.attn_scale = static_cast<float>(1.0 / std::sqrt(*qs));  // validate_hparams() refuses qs <= 0

  // Present with 0 (or less) is refused by validate_hparams() rather than read as "no local layers".
  const std::string wk = a + "attention.sliding_window";
  const int64_t n_swa = f.get_int_opt(wk).value_or(0);
  if (n_swa < -(1 << 24) || n_swa > (1 << 24)) fail("{} = {} is outside [1, {}]", f.key_origin(wk), n_swa, 1 << 24);
  hp.n_swa = static_cast<int>(n_swa);
  if (f.has(wk)) {
    const std::string pk = a + "attention.sliding_window_pattern";
    const GgufValue* pv = f.find(pk);
    if (pv && pv->is_array()) {  // per-layer flags, 1 = local (llama.cpp's is_swa_impl)
      if (const auto* b = std::get_if<std::vector<bool>>(&pv->v))
        hp.swa_layers.assign(b->begin(), b->end());
      else
        for (int64_t x : f.get_int_array(pk)) hp.swa_layers.push_back(x != 0);
      if (hp.swa_layers.size() != static_cast<size_t>(hp.n_layer))
        fail("{}: '{}' has {} per-layer flags for {} layers", f.path(), pk, hp.swa_layers.size(), hp.n_layer);
    } else {
      const int64_t pattern = f.get_int_opt(pk).value_or(6);
      if (pattern < 0 || pattern > hp.n_layer)
        fail("{} = {} is outside [0, {}]", f.key_origin(pk), pattern, hp.n_layer);
      // llama_hparams::set_swa_pattern: layer il is local unless il % pattern == pattern - 1;
      // pattern 0 makes every layer local.
      hp.swa_layers.assign(hp.n_layer, 0);
      for (int il = 0; il < hp.n_layer; ++il) hp.swa_layers[il] = pattern == 0 || il % pattern < pattern - 1;
    }
    hp.rope_base_swa = static_cast<float>(f.get_float_opt(a + "rope.freq_base_swa").value_or(10000.0));
  }
}

void load_gemma3(const TensorSource& f, HParams& hp, Weights& w) {
  load_decoder_weights(f, hp, w);  // shared tensors: embeddings, q/k/v/o, gate/up/down, norms
  const int64_t d = hp.n_embd;
  for (int il = 0; il < hp.n_layer; ++il) {
    const std::string p = "blk." + std::to_string(il) + ".";
    LayerWeights& l = w.layers[il];
    l.q_norm = vec_f32(f, p + "attn_q_norm.weight", hp.d_head);
    l.k_norm = vec_f32(f, p + "attn_k_norm.weight", hp.d_head);
    l.attn_post_norm = vec_f32(f, p + "post_attention_norm.weight", d);
    l.ffn_post_norm = vec_f32(f, p + "post_ffw_norm.weight", d);
  }
}

}  // namespace kvz

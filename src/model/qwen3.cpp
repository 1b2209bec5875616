// Qwen3 (dense): the llama dataflow with NeoX (rotate-half) RoPE and a per-head RMSNorm on
// q and k before RoPE (Session applies it when LayerWeights has q_norm/k_norm). Keys and
// tensor names are llama's under the "qwen3." prefix; GGUF does not permute qwen3's q/k,
// so both formats use the HF layout. Reference: transformers models/qwen3/modeling_qwen3.py
// (Qwen3Attention: q_norm/k_norm over head_dim, then apply_rotary_pos_emb).
#include "model/loader_util.h"
#include "model/model.h"

namespace kvz {

void hparams_qwen3(const TensorSource& f, HParams& hp) {
  read_decoder_hparams(f, hp);
  hp.rope_style = RopeStyle::Neox;
  hp.qk_norm = true;
}

void load_qwen3(const TensorSource& f, HParams& hp, Weights& w) {
  load_decoder_weights(f, hp, w);
  for (int il = 0; il < hp.n_layer; ++il) {
    const std::string p = "blk." + std::to_string(il) + ".";
    w.layers[il].q_norm = vec_f32(f, p + "attn_q_norm.weight", hp.d_head);
    w.layers[il].k_norm = vec_f32(f, p + "attn_k_norm.weight", hp.d_head);
  }
}

HfNames hf_names_qwen3() {
  return {{"qwen3"},
          {},
          {{"self_attn.q_norm.weight", "attn_q_norm.weight"}, {"self_attn.k_norm.weight", "attn_k_norm.weight"}},
          false};
}

}  // namespace kvz

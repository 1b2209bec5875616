// Qwen2 / Qwen2.5 family: the shared decoder with biases on the q, k and v projections and
// NeoX (rotate-half) RoPE, which GGUF keeps unpermuted for qwen2.
#include "model/loader_util.h"
#include "model/model.h"

namespace kvz {

void hparams_qwen2(const TensorSource& f, HParams& hp) {
  read_decoder_hparams(f, hp);
  hp.rope_style = RopeStyle::Neox;
  hp.qkv_bias = true;
}

void load_qwen2(const TensorSource& f, HParams& hp, Weights& w) {
  load_decoder_weights(f, hp, w);
  const int64_t dq = int64_t{hp.n_head} * hp.d_head, dkv = int64_t{hp.n_head_kv} * hp.d_head;
  for (int il = 0; il < hp.n_layer; ++il) {
    const std::string p = "blk." + std::to_string(il) + ".";
    LayerWeights& l = w.layers[il];
    l.bq = vec_f32(f, p + "attn_q.bias", dq);
    l.bk = vec_f32(f, p + "attn_k.bias", dkv);
    l.bv = vec_f32(f, p + "attn_v.bias", dkv);
  }
}

}  // namespace kvz

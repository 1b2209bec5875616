// Hyper-parameters read from the model file. Immutable after load. Family differences
// are flags here first (STYLE.md); only a different dataflow gets its own forward.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kvz {

enum class RopeStyle {
  Interleaved,  // pairs (x[2i], x[2i+1]): GGUF llama (q/k weights permuted at conversion)
  Neox,         // pairs (x[i], x[i + d/2]): qwen2, qwen3, gemma3, HF layout
};

enum class FfnAct {
  Silu,      // SwiGLU: silu(gate) * up (llama, qwen)
  GeluTanh,  // GeGLU: gelu_tanh(gate) * up (gemma)
};

struct HParams {
  std::string arch;  // GGUF general.architecture
  std::string name;  // general.name, for display and file identity
  int n_layer = 0;
  int n_embd = 0;
  int n_head = 0;
  int n_head_kv = 0;
  int d_head = 0;
  int n_ff = 0;
  int n_vocab = 0;
  int n_ctx_train = 0;
  float norm_eps = 1e-5f;
  float rope_base = 10000.0f;
  int rope_dim = 0;  // rotated dims per head (== d_head for all supported models)
  RopeStyle rope_style = RopeStyle::Interleaved;
  float rope_linear_scale = 1.0f;  // positions are divided by this (rope scaling "linear")
  bool has_rope_freqs = false;     // per-dim frequency divisors (Llama 3.x), tensor rope_freqs.weight
  bool tied_embeddings = false;
  bool qkv_bias = false;
  bool qk_norm = false;
  float attn_scale = 0.0f;  // softmax scale; 0 = 1/sqrt(d_head)
  float embd_scale = 1.0f;  // token embeddings are multiplied by this (gemma: sqrt(n_embd))
  bool post_norms = false;  // RMSNorm of the attention and FFN outputs before each residual add (gemma)
  FfnAct ffn_act = FfnAct::Silu;
  float logit_softcap = 0.0f;  // logits = c * tanh(logits / c) when > 0
  // Sliding-window ("local") layers: a query at position p sees keys at positions
  // (p - n_swa, p]. Their RoPE uses rope_base_swa and no linear scaling (llama.cpp's
  // rope_freq_base_train_swa / rope_freq_scale_train_swa).
  int n_swa = 0;                    // window length in positions; 0: no local layers
  std::vector<uint8_t> swa_layers;  // [n_layer], 1 = local layer; empty when n_swa == 0
  float rope_base_swa = 10000.0f;

  int n_group() const { return n_head / n_head_kv; }
  bool is_swa(int il) const { return !swa_layers.empty() && swa_layers[il] != 0; }
  float softmax_scale() const;
};

}  // namespace kvz

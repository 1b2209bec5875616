// HF name tables for families whose loaders live elsewhere (being written in parallel):
// each family adds `hf_names_<family>()` to its line in model/registry.cpp.
#include "model/model.h"

namespace kvz {

// Qwen2 / Qwen2.5 (Qwen2ForCausalLM): llama names plus q/k/v biases. GGUF keeps qwen2's
// q/k unpermuted, so the loader uses NeoX RoPE for both formats.
HfNames hf_names_qwen2() {
  return {{"qwen2"},
          {{"sliding_window", "attention.sliding_window"}},
          {{"self_attn.q_proj.bias", "attn_q.bias"},
           {"self_attn.k_proj.bias", "attn_k.bias"},
           {"self_attn.v_proj.bias", "attn_v.bias"}},
          false};
}

// Gemma 3 text (Gemma3ForCausalLM, model_type gemma3_text; gemma3 wraps it in
// text_config). Four norms per layer and q/k norms. HF stores every RMSNorm weight as w
// and computes x * (1 + w); GGUF stores 1 + w (convert_hf_to_gguf adds 1 to every
// "norm.weight"), so norm_plus_one makes HF folders load like GGUF files. Rope: HF 5.x
// writes rope_parameters per layer type; hf_source maps full_attention to rope.freq_base
// and sliding_attention to rope.freq_base_swa.
HfNames hf_names_gemma3() {
  return {{"gemma3_text", "gemma3"},
          {{"sliding_window", "attention.sliding_window"},
           {"query_pre_attn_scalar", "attention.query_pre_attn_scalar"},
           {"final_logit_softcapping", "final_logit_softcapping"},
           {"attn_logit_softcapping", "attn_logit_softcapping"},
           {"rope_local_base_freq", "rope.freq_base_swa"}},
          {{"post_attention_layernorm.weight", "post_attention_norm.weight"},
           {"pre_feedforward_layernorm.weight", "ffn_norm.weight"},
           {"post_feedforward_layernorm.weight", "post_ffw_norm.weight"},
           {"self_attn.q_norm.weight", "attn_q_norm.weight"},
           {"self_attn.k_norm.weight", "attn_k_norm.weight"}},
          true};
}

}  // namespace kvz

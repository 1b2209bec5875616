// Llama family (SmolLM2, Llama 2/3.x, TinyLlama): RMSNorm, RoPE (interleaved pairs, as
// GGUF's converter permutes q/k for llama), grouped-query attention, SwiGLU, tied or
// separate output head. Llama 3.x rope scaling arrives as the rope_freqs.weight tensor
// of per-dimension frequency divisors; linear scaling as rope.scaling.factor.
#include "model/loader_util.h"
#include "model/model.h"

namespace kvz {

void hparams_llama(const TensorSource& f, HParams& hp) {
  read_decoder_hparams(f, hp);
  // GGUF's converter permutes llama q/k rows so RoPE rotates adjacent pairs; HF keeps the
  // original rotate-half layout (transformers' GGUF loader undoes the permutation).
  hp.rope_style = f.format() == "hf" ? RopeStyle::Neox : RopeStyle::Interleaved;
}

void load_llama(const TensorSource& f, HParams& hp, Weights& w) { load_decoder_weights(f, hp, w); }

// HF: LlamaForCausalLM (SmolLM2, Llama 2/3 without llama3 rope scaling) uses the common
// names as they are.
HfNames hf_names_llama() { return {{"llama"}, {}, {}, false}; }

}  // namespace kvz

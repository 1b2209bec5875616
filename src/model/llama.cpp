// Llama family (SmolLM2, Llama 2/3.x, TinyLlama): RMSNorm, RoPE (interleaved pairs, as
// GGUF's converter permutes q/k for llama), grouped-query attention, SwiGLU, tied or
// separate output head. Llama 3.x rope scaling arrives as the rope_freqs.weight tensor
// of per-dimension frequency divisors; linear scaling as rope.scaling.factor.
#include "model/loader_util.h"
#include "model/model.h"

namespace kvz {

void load_llama(const GgufFile& f, HParams& hp, Weights& w) {
  load_decoder(f, hp, w);
  hp.rope_style = RopeStyle::Interleaved;
}

}  // namespace kvz

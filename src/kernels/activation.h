// Gated activations of the feed-forward block, vectorised per ISA (scalar expf/tanhf calls
// were 14% of Gemma 3's one-thread prefill). The session uses swiglu_vec; geglu_tanh_vec is
// kept tested but unused (see Session::forward_batch on Gemma 3 parity). Both are out = up * gate * sigmoid(z):
//   swiglu:     z = gate                                    (silu; llama, qwen)
//   geglu_tanh: z = 2 sqrt(2/pi) (gate + 0.044715 gate^3)  (gelu with the tanh form; gemma),
// since x/2 (1 + tanh(u)) = x sigmoid(2u). sigmoid from a polynomial exp, relative error
// ~2e-7. out may alias gate or up.
#pragma once

#include <cstdint>

namespace kvz {

void swiglu_vec(const float* gate, const float* up, float* out, int64_t n);
void geglu_tanh_vec(const float* gate, const float* up, float* out, int64_t n);

}  // namespace kvz

// Gated activations of the feed-forward block, vectorised per ISA (scalar expf/tanhf calls
// were 14-16 % of Gemma 3's prefill). out may alias gate or up.
//   swiglu_vec:     out = up * gate * sigmoid(gate)   (silu; llama, qwen); sigmoid from a
//                   polynomial exp, relative error ~2e-7 against the scalar definition.
//   geglu_tanh_vec: out = up * gate / 2 * (1 + tanh(sqrt(2/pi) (gate + 0.044715 gate^3)))
//                   (gelu in the tanh form; gemma): the scalar form's float steps in its
//                   order, with tanh correctly rounded (evaluated in double), so it differs
//                   from model/blocks.cpp's geglu_tanh only where glibc's tanhf is one ulp off
//                   (kernels/attention_impl.h, geglu_impl). Bitwise the same in every build.
#pragma once

#include <cstdint>

namespace kvz {

void swiglu_vec(const float* gate, const float* up, float* out, int64_t n);
void geglu_tanh_vec(const float* gate, const float* up, float* out, int64_t n);

}  // namespace kvz

// Helpers for architecture loaders: typed, shape-checked tensor lookup.
#pragma once

#include <string>
#include <vector>

#include "io/gguf.h"
#include "kernels/types.h"
#include "model/hparams.h"
#include "model/model.h"

namespace kvz {

// A 2-D weight [n_out x n_in] (GGUF shape {n_in, n_out}); throws naming the tensor when
// missing, of the wrong shape, or of a type we cannot multiply.
WeightView weight_2d(const TensorSource& f, const std::string& name, int64_t n_in, int64_t n_out);
// As above, nullptr-data view when absent.
WeightView weight_2d_opt(const TensorSource& f, const std::string& name, int64_t n_in, int64_t n_out);
// A 1-D F32 vector of length n (norm weights, biases).
const float* vec_f32(const TensorSource& f, const std::string& name, int64_t n);
const float* vec_f32_opt(const TensorSource& f, const std::string& name, int64_t n);

// The decoder most families share (llama, qwen2, qwen3), in two steps.
// read_decoder_hparams: the <arch>.* keys (counts, eps, rope base and scaling, vocabulary
// size), no tensor looked at. load_decoder_weights: the standard tensors (token_embd,
// output_norm, output or tied, rope_freqs, blk.N.{attn_norm, attn_q/k/v/output, ffn_norm,
// ffn_gate/up/down}), every shape checked against hp; it sets the flags that follow from
// which tensors exist (tied embeddings, rope frequency divisors). The family file then sets
// what differs; the values themselves (finite eps, head counts that divide, ...) are
// checked by validate_hparams() and validate_weights() (model/validate.h), for every family.
void read_decoder_hparams(const TensorSource& f, HParams& hp);
void load_decoder_weights(const TensorSource& f, HParams& hp, Weights& w);

// Llama 3.x rope scaling as per-frequency divisors (the values of GGUF's rope_freqs.weight)
// from <arch>.rope.scaling.{factor, low_freq_factor, high_freq_factor,
// original_context_length}; a missing key is an error (their ranges: validate_hparams()).
std::vector<float> llama3_rope_divisors(const TensorSource& f, const std::string& arch_prefix, double base,
                                        int rope_dim);

}  // namespace kvz

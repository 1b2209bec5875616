// Hyper-parameter validation at load: the one place that decides whether the numbers a
// family loader read make a model we can run, for GGUF files and HF folders alike.
// Loaders only check that a value fits its field (type, integer range, required keys,
// supported features); a NaN epsilon, a zero rope base or a bos id past the vocabulary
// would otherwise load and then generate NaN or empty text with exit status 0.
#pragma once

#include "io/tensor_source.h"
#include "model/hparams.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace kvz {

// Both throw kvz::Error naming the field as the file spells it (GGUF key, or config.json
// key through TensorSource::key_origin) and the bad value.
// validate_hparams: the numbers alone (counts, head sizes, epsilon, rope bases and scaling,
// sliding windows), before any tensor is read (model_hparams calls it).
void validate_hparams(const HParams& hp, const TensorSource& f);
// validate_weights: what the tensors and the tokenizer add (embedding rows against the
// vocabulary size, rope frequency divisors, special-token ids in range). `vocab` is the
// tokenizer as read, before placeholder tokens pad it to the embedding rows.
void validate_weights(const HParams& hp, const Weights& w, const VocabData& vocab, const TensorSource& f);

}  // namespace kvz

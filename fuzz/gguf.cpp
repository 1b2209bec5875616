// GGUF reader. The input is a whole .gguf file in memory (GgufFile::from_memory). A file
// that parses goes on through what Model::load does with it short of touching weights for
// compute: the hyper-parameters (model_hparams: the family's keys, validate_hparams), the
// family's tensor table against them, the GGUF vocabulary and validate_weights, then a
// tokenizer built from that vocabulary encodes and decodes a short text.
#include <string>
#include <vector>

#include "common.h"
#include "io/gguf.h"
#include "model/model.h"
#include "model/validate.h"
#include "targets.h"
#include "tokenizer/tokenizer.h"

namespace kvz::fuzz {

std::string gguf(const uint8_t* data, size_t size) {
  return refused([&] {
    const auto f = GgufFile::from_memory(data, size, "fuzz.gguf");
    for (const GgufTensor& t : f->tensors()) touch(t.data, t.n_bytes);
    HParams hp = model_hparams(*f);
    Weights w;
    arch_of(*f).load(*f, hp, w);
    VocabData vocab = vocab_from_gguf(*f);
    validate_weights(hp, w, vocab, *f);
    const Tokenizer tok(std::move(vocab));
    const std::vector<int32_t> ids = tok.encode("Hello, world! <|im_start|>user\n 12345 \xc3\xa9t\xc3\xa9", true);
    tok.decode(ids);
    for (int32_t id = 0; id < tok.n_vocab() && id < 64; ++id) tok.token_bytes(id);
  });
}

}  // namespace kvz::fuzz

KVZ_FUZZ_ENTRY(gguf)

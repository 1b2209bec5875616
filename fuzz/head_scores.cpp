// Head-scores reader (decode_head_scores). The checksum covers every byte, so the input is
// the file without its last 8 bytes behind one selector byte:
//   u8 model (even: tiny, 2 layers x 2 KV heads; odd: SmolLM2-135M, 30 x 3) | file body
// and the target appends the checksum the body needs. The model's fingerprint is the one
// the seeds carry (fuzz/make_corpus.py writes it), so a mutation of that field is another
// model's file.
#include <string>
#include <vector>

#include "common.h"
#include "core/hash.h"
#include "io/head_scores_file.h"
#include "targets.h"

namespace kvz::fuzz {

std::string head_scores(const uint8_t* data, size_t size) {
  if (size < 1) return "input shorter than its selector byte";
  ModelIdentity id;
  id.fingerprint = 0x6b767a66757a7a31ull;
  id.arch = "llama";
  if (data[0] % 2 == 0) id.n_layer = 2, id.n_head_kv = 2, id.d_head = 32;
  else id.n_layer = 30, id.n_head_kv = 3, id.d_head = 64;
  std::vector<uint8_t> file(data + 1, data + size);
  const uint64_t sum = fnv1a(file.data(), file.size());
  const auto* s = reinterpret_cast<const uint8_t*>(&sum);
  file.insert(file.end(), s, s + 8);
  return refused([&] {
    const HeadScoreFile h = decode_head_scores(file.data(), file.size(), "fuzz.kvzh", id);
    touch(h.scores.data(), h.scores.size() * sizeof(float));
  });
}

}  // namespace kvz::fuzz

KVZ_FUZZ_ENTRY(head_scores)

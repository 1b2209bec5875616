// safetensors reader: the input is a whole file in memory (SafetensorsFile::from_memory).
// Every tensor's bytes are read once (AddressSanitizer checks the offsets it accepted), and
// the first elements of each float tensor are converted as HfSource converts norms.
#include <algorithm>
#include <string>
#include <vector>

#include "common.h"
#include "io/safetensors.h"
#include "targets.h"

namespace kvz::fuzz {

std::string safetensors(const uint8_t* data, size_t size) {
  return refused([&] {
    const auto f = SafetensorsFile::from_memory(data, size, "fuzz.safetensors");
    for (const SafeTensor& t : f->tensors()) {
      touch(t.data, t.n_bytes);
      if (t.type && t.n_elements() > 0) {
        std::vector<float> out(static_cast<size_t>(std::min<int64_t>(t.n_elements(), 64)));
        dequantize_row(*t.type, t.data, out.data(), static_cast<int64_t>(out.size()));
      }
    }
    for (const auto& [k, v] : f->metadata()) touch(v.data(), v.size());
  });
}

}  // namespace kvz::fuzz

KVZ_FUZZ_ENTRY(safetensors)

// FNV-1a 64-bit: checksums of our own file formats and the model fingerprint. Not a
// cryptographic hash; it detects corruption, not tampering.
#pragma once

#include <cstddef>
#include <cstdint>

namespace kvz {

inline uint64_t fnv1a(const void* data, size_t n, uint64_t h = 1469598103934665603ull) {
  const auto* p = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

}  // namespace kvz

// Unicode tables for NFC (generated into unicode_nfc_data.cpp; see that file's header).
#pragma once

#include <cstddef>
#include <cstdint>

namespace kvz::nfc_data {

struct CccRange {
  uint32_t first, last;
  uint8_t ccc;  // canonical combining class, non-zero
};
struct Decomp {
  uint32_t cp, a, b;  // cp -> a b (b == 0: singleton), one level
};
struct Compose {
  uint32_t a, b, c;  // primary composite: a + b -> c
};

extern const CccRange kCcc[];  // sorted by first
extern const size_t kCccCount;
extern const Decomp kDecomp[];  // sorted by cp
extern const size_t kDecompCount;
extern const Compose kCompose[];  // sorted by (a, b)
extern const size_t kComposeCount;

}  // namespace kvz::nfc_data

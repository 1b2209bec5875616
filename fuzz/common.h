// Helpers the fuzz targets share.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "core/error.h"

namespace kvz::fuzz {

// Reads every byte of [p, p + n) once, so AddressSanitizer sees a pointer the reader handed
// out that points outside the input.
inline void touch(const void* p, size_t n) {
  const auto* b = static_cast<const uint8_t*>(p);
  volatile uint8_t sink = 0;
  for (size_t i = 0; i < n; ++i) sink = sink + b[i];
  (void)sink;
}

// Runs `f`; "" when it returns, the message of a kvz::Error it throws. Other exceptions
// propagate: they are findings.
template <typename F>
std::string refused(F&& f) {
  try {
    f();
    return "";
  } catch (const Error& e) {
    return e.what()[0] ? e.what() : "(empty kvz::Error message)";
  }
}

}  // namespace kvz::fuzz

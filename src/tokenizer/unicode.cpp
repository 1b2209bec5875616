#include "tokenizer/unicode.h"

namespace kvz::utf8 {

int seq_len(uint8_t c) {
  if (c < 0x80) return 1;
  if (c < 0xC2) return 0;  // continuation byte, or overlong 2-byte lead C0/C1
  if (c < 0xE0) return 2;
  if (c < 0xF0) return 3;
  if (c < 0xF5) return 4;
  return 0;
}

int decode(std::string_view s, size_t i, uint32_t* cp) {
  const auto* p = reinterpret_cast<const uint8_t*>(s.data()) + i;
  const size_t avail = s.size() - i;
  const int n = seq_len(p[0]);
  if (n == 0 || static_cast<size_t>(n) > avail) return 0;
  if (n == 1) {
    *cp = p[0];
    return 1;
  }
  uint32_t c = p[0] & (0x7F >> n);
  for (int k = 1; k < n; ++k) {
    if ((p[k] & 0xC0) != 0x80) return 0;
    c = (c << 6) | (p[k] & 0x3F);
  }
  // Overlong 3/4-byte forms, surrogates, and values past U+10FFFF are ill-formed.
  if ((n == 3 && c < 0x800) || (n == 4 && c < 0x10000) || (c >= 0xD800 && c <= 0xDFFF) ||
      c > 0x10FFFF)
    return 0;
  *cp = c;
  return n;
}

void append(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

}  // namespace kvz::utf8

namespace kvz::byte_level {

namespace {

bool printable(int b) { return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE; }

struct Tables {
  std::array<uint32_t, 256> fwd{};
  std::array<int16_t, 512> rev{};  // every alphabet code point is < 0x144
  std::array<std::string, 256> fwd_utf8;
  Tables() {
    rev.fill(-1);
    uint32_t next = 0x100;
    for (int b = 0; b < 256; ++b) {
      fwd[b] = printable(b) ? static_cast<uint32_t>(b) : next++;
      rev[fwd[b]] = static_cast<int16_t>(b);
      utf8::append(fwd_utf8[b], fwd[b]);
    }
  }
};

const Tables& tables() {
  static const Tables t;  // immutable after construction (thread-safe static init)
  return t;
}

}  // namespace

const std::array<uint32_t, 256>& byte_to_cp() { return tables().fwd; }

int cp_to_byte(uint32_t cp) { return cp < 512 ? tables().rev[cp] : -1; }

std::string encode(std::string_view bytes) {
  const auto& t = tables();
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) out += t.fwd_utf8[c];
  return out;
}

}  // namespace kvz::byte_level

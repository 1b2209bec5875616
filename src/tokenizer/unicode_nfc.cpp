// NFC normalization (Qwen2 tokenizer.json's normalizer), following UAX #15 section 9
// (detailed algorithm) with the tables in unicode_nfc_data.cpp.
#include <algorithm>
#include <vector>

#include "tokenizer/unicode.h"
#include "tokenizer/unicode_nfc_data.h"

namespace kvz::nfc {

namespace {

using namespace nfc_data;

constexpr uint32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr uint32_t kLCount = 19, kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount,
                   kSCount = kLCount * kNCount;
// Ill-formed bytes are carried as these private values (never in any table).
constexpr uint32_t kRawByte = 0x80000000u;

uint8_t ccc(uint32_t cp) {
  if (cp < 0x300 || cp >= kRawByte) return 0;
  const CccRange* e = kCcc + kCccCount;
  const CccRange* it = std::upper_bound(kCcc, e, cp, [](uint32_t c, const CccRange& r) { return c < r.first; });
  if (it == kCcc) return 0;
  --it;
  return cp <= it->last ? it->ccc : 0;
}

void decompose(uint32_t cp, std::vector<uint32_t>& out) {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    const uint32_t s = cp - kSBase;
    out.push_back(kLBase + s / kNCount);
    out.push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount) out.push_back(kTBase + s % kTCount);
    return;
  }
  if (cp >= 0xC0 && cp < kRawByte) {
    const Decomp* e = kDecomp + kDecompCount;
    const Decomp* it = std::lower_bound(kDecomp, e, cp, [](const Decomp& d, uint32_t c) { return d.cp < c; });
    if (it != e && it->cp == cp) {
      decompose(it->a, out);
      if (it->b) decompose(it->b, out);
      return;
    }
  }
  out.push_back(cp);
}

// Primary composite of a + b, or 0.
uint32_t compose(uint32_t a, uint32_t b) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount)
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase && b < kTBase + kTCount)
    return a + (b - kTBase);
  const Compose* e = kCompose + kComposeCount;
  const Compose* it = std::lower_bound(kCompose, e, std::pair{a, b}, [](const Compose& c, std::pair<uint32_t, uint32_t> k) {
    return c.a != k.first ? c.a < k.first : c.b < k.second;
  });
  return (it != e && it->a == a && it->b == b) ? it->c : 0;
}

}  // namespace

bool is_trivially_nfc(std::string_view s) {
  for (unsigned char c : s)
    if (c >= 0xCC) return false;
  return true;
}

std::string normalize(std::string_view s) {
  if (is_trivially_nfc(s)) return std::string(s);
  // 1. Full canonical decomposition.
  std::vector<uint32_t> d;
  d.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    uint32_t cp;
    const int n = utf8::decode(s, i, &cp);
    if (n == 0) {
      d.push_back(kRawByte | static_cast<unsigned char>(s[i++]));
      continue;
    }
    decompose(cp, d);
    i += n;
  }
  // 2. Canonical ordering: stable sort each run of non-starters by combining class.
  for (size_t i = 0; i < d.size();) {
    if (ccc(d[i]) == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < d.size() && ccc(d[j]) != 0) ++j;
    std::stable_sort(d.begin() + i, d.begin() + j, [](uint32_t x, uint32_t y) { return ccc(x) < ccc(y); });
    i = j;
  }
  // 3. Canonical composition: a character joins the last starter unless a character in
  // between has a combining class >= its own (blocked), or is a starter.
  std::vector<uint32_t> out;
  out.reserve(d.size());
  long starter = -1;
  int last_cc = -1;
  for (uint32_t cp : d) {
    const int cc = ccc(cp);
    if (starter >= 0) {
      // Between the starter and cp there are only non-starters, in non-decreasing class
      // order, so the last one (last_cc) decides whether cp is blocked.
      const bool adjacent = static_cast<size_t>(starter) + 1 == out.size();
      if (adjacent || last_cc < cc) {
        if (const uint32_t c = compose(out[starter], cp)) {
          out[starter] = c;
          continue;
        }
      }
    }
    if (cc == 0) {
      starter = static_cast<long>(out.size());
      last_cc = 0;
    } else {
      last_cc = cc;
    }
    out.push_back(cp);
  }
  std::string r;
  r.reserve(s.size());
  for (uint32_t cp : out) {
    if (cp & kRawByte)
      r.push_back(static_cast<char>(cp & 0xFF));
    else
      utf8::append(r, cp);
  }
  return r;
}

}  // namespace kvz::nfc

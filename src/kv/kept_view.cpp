#include "kv/kept_view.h"

#include "core/error.h"
#include "tokenizer/tokenizer.h"

namespace kvz {

double KeptView::head_fraction(int il, int ih) const {
  return n_ctx > 0 ? static_cast<double>(rows(il, ih)) / static_cast<double>(n_ctx) : 0.0;
}

double KeptView::layer_fraction(int il) const {
  if (n_ctx == 0 || n_head_kv == 0) return 0.0;
  int64_t r = 0;
  for (int ih = 0; ih < n_head_kv; ++ih) r += rows(il, ih);
  return static_cast<double>(r) / (static_cast<double>(n_head_kv) * static_cast<double>(n_ctx));
}

double KeptView::token_fraction(int64_t t) const {
  const int64_t pairs = int64_t{n_layer} * n_head_kv;
  return pairs > 0 ? static_cast<double>(token_heads[t]) / static_cast<double>(pairs) : 0.0;
}

KeptView kept_view(const KvCache& cache, int64_t n_sys, int64_t n_ctx) {
  if (n_sys < 0 || n_ctx < 0) fail("kept_view: negative token counts (n_sys {}, n_ctx {})", n_sys, n_ctx);
  KeptView v;
  v.n_layer = cache.n_layer();
  v.n_head_kv = cache.n_head_kv();
  v.n_sys = n_sys;
  v.n_ctx = n_ctx;
  const size_t n_heads = static_cast<size_t>(v.n_layer) * v.n_head_kv;
  v.mask.assign(n_heads * static_cast<size_t>(n_ctx), 0);
  v.head_rows.assign(n_heads, 0);
  v.token_heads.assign(static_cast<size_t>(n_ctx), 0);
  for (int il = 0; il < v.n_layer; ++il)
    for (int ih = 0; ih < v.n_head_kv; ++ih) {
      const HeadSegment& s = cache.seg(il, ih);
      uint8_t* keep = v.mask.data() + (static_cast<size_t>(il) * v.n_head_kv + ih) * n_ctx;
      int64_t rows = 0;
      for (int64_t r = 0; r < s.len; ++r) {
        const int64_t t = int64_t{s.pos[r]} - n_sys;
        if (t < 0 || t >= n_ctx) continue;  // system prompt or a later turn
        if (keep[t]) fail("kept_view: head ({}, {}) holds position {} twice", il, ih, s.pos[r]);
        keep[t] = 1;
        ++rows;
        ++v.token_heads[t];
      }
      v.head_rows[static_cast<size_t>(il) * v.n_head_kv + ih] = rows;
    }
  return v;
}

std::vector<std::string> token_pieces(const Tokenizer& tok, std::span<const int32_t> ids) {
  std::vector<std::string> out;
  out.reserve(ids.size());
  Utf8Stream s;
  for (const int32_t id : ids) out.push_back(s.push(tok.token_bytes(id)));
  if (!out.empty()) out.back() += s.flush();  // a character never completed: U+FFFD below
  // Utf8Stream holds back incomplete tails but passes stray bytes through: replace what is
  // still not UTF-8 so that every consumer (JSON, HTML) gets valid text.
  for (std::string& p : out) {
    std::string clean;
    for (size_t i = 0; i < p.size();) {
      const auto c = static_cast<unsigned char>(p[i]);
      const size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
      bool ok = n > 0 && i + n <= p.size();
      for (size_t k = 1; ok && k < n; ++k) ok = (static_cast<unsigned char>(p[i + k]) & 0xC0) == 0x80;
      if (ok) {
        clean.append(p, i, n);
        i += n;
      } else {
        clean += "\xEF\xBF\xBD";
        ++i;
      }
    }
    p = std::move(clean);
  }
  return out;
}

std::string kept_bitmap_hex(const uint8_t* keep, int64_t n) {
  static const char kHex[] = "0123456789abcdef";
  std::string out(static_cast<size_t>((n + 3) / 4), '0');
  for (int64_t t = 0; t < n; ++t)
    if (keep[t]) {
      char& c = out[static_cast<size_t>(t / 4)];
      const int d = (c <= '9' ? c - '0' : c - 'a' + 10) | (8 >> (t % 4));
      c = kHex[d];
    }
  return out;
}

}  // namespace kvz

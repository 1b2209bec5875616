// SentencePiece BPE with byte fallback (GGUF tokenizer.ggml.model = "llama": Gemma 3,
// Llama 2). Reference behaviour: sentencepiece src/bpe_model.cc (Model::SampleEncode /
// Encode: score-ordered pair merges, resegmentation of unused pieces, byte fallback) and
// llama.cpp src/llama-vocab.cpp llm_tokenizer_spm_session.
#include <queue>

#include "core/error.h"
#include "tokenizer/models.h"
#include "tokenizer/unicode.h"

namespace kvz {

namespace {

constexpr std::string_view kSpace = "\xE2\x96\x81";  // U+2581 LOWER ONE EIGHTH BLOCK

TokenType type_of(const VocabData& v, int32_t id) {
  return v.types.empty() ? TokenType::Normal : v.types[id];
}

// sentencepiece only merges into "normal" pieces (NORMAL, USER_DEFINED, UNUSED); control
// and byte pieces are reserved.
bool mergeable(TokenType t) {
  return t == TokenType::Normal || t == TokenType::UserDefined || t == TokenType::Unused ||
         t == TokenType::Undefined;
}

}  // namespace

SpmBpe::SpmBpe(const VocabData& v, const TokenIndex& index) : v_(&v), index_(&index) {
  for (int b = 0; b < 256; ++b) {
    byte_id_[b] = index.find(fmt::format("<0x{:02X}>", b));
  }
}

void SpmBpe::encode(std::string_view fragment, bool at_text_start, std::vector<int32_t>& out) const {
  // Escape whitespace: ' ' -> U+2581, with the optional dummy prefix.
  std::string s;
  s.reserve(fragment.size() * 3 + 3);
  if (v_->add_space_prefix && at_text_start) s += kSpace;
  for (char c : fragment) {
    if (c == ' ')
      s += kSpace;
    else
      s.push_back(c);
  }
  if (s.empty()) return;

  // Symbols are byte spans of `s`: [off, off + len). Initially one per UTF-8 character
  // (an ill-formed byte is a one-byte symbol that will fall back to its byte token).
  struct Sym {
    uint32_t off, len;
    int prev, next;
  };
  std::vector<Sym> sym;
  for (size_t i = 0; i < s.size();) {
    uint32_t cp;
    const int n = std::max(1, utf8::decode(s, i, &cp));
    const int k = static_cast<int>(sym.size());
    sym.push_back({static_cast<uint32_t>(i), static_cast<uint32_t>(n), k - 1, -1});
    if (k > 0) sym[k - 1].next = k;
    i += n;
  }

  struct Cand {
    float score;
    int left;
    uint32_t len;
    bool operator<(const Cand& o) const {  // max-heap: higher score, then smaller left
      return score != o.score ? score < o.score : left > o.left;
    }
  };
  std::priority_queue<Cand> heap;
  std::unordered_map<uint64_t, uint32_t> rev;  // merged span (off << 32 | len) -> left length
  const auto& v = *v_;
  auto lookup = [&](uint32_t off, uint32_t len) -> int32_t {
    return index_->find(std::string_view(s).substr(off, len));
  };
  auto push = [&](int l) {
    if (l < 0 || sym[l].next < 0) return;
    const int r = sym[l].next;
    const uint32_t len = sym[l].len + sym[r].len;
    const int32_t id = lookup(sym[l].off, len);
    if (id < 0 || !mergeable(type_of(v, id))) return;
    heap.push({v.scores.empty() ? 0.0f : v.scores[id], l, len});
  };
  for (int i = 0; i + 1 < static_cast<int>(sym.size()); ++i) push(i);
  while (!heap.empty()) {
    const Cand c = heap.top();
    heap.pop();
    Sym& L = sym[c.left];
    if (L.len == 0 || L.next < 0 || L.len + sym[L.next].len != c.len) continue;  // stale
    Sym& R = sym[L.next];
    rev[(static_cast<uint64_t>(L.off) << 32) | c.len] = L.len;
    L.len = c.len;
    R.len = 0;
    L.next = R.next;
    if (R.next >= 0) sym[R.next].prev = c.left;
    push(L.prev);
    push(c.left);
  }

  // Emit (sentencepiece ResegmentSymbol): a piece that is Unused, or not a piece, is split
  // back into the two symbols that formed it, recursively; a single character that is not
  // a piece becomes its <0xXX> byte tokens (or unk).
  auto emit_bytes = [&](std::string_view piece) {
    for (unsigned char b : piece) {
      if (byte_id_[b] >= 0)
        out.push_back(byte_id_[b]);
      else if (v.unk_id >= 0)
        out.push_back(v.unk_id);
    }
  };
  auto reseg = [&](auto&& self, uint32_t off, uint32_t len) -> void {
    const int32_t id = lookup(off, len);
    if (id >= 0 && mergeable(type_of(v, id)) && type_of(v, id) != TokenType::Unused) {
      out.push_back(id);
      return;
    }
    auto it = rev.find((static_cast<uint64_t>(off) << 32) | len);
    if (it == rev.end()) {
      emit_bytes(std::string_view(s).substr(off, len));
      return;
    }
    self(self, off, it->second);
    self(self, off + it->second, len - it->second);
  };
  for (int i = 0; i >= 0 && i < static_cast<int>(sym.size()); i = sym[i].next) reseg(reseg, sym[i].off, sym[i].len);
}

std::string SpmBpe::token_bytes(std::string_view text, TokenType type) {
  if (type == TokenType::Byte && text.size() == 6 && text.substr(0, 3) == "<0x" && text[5] == '>') {
    auto hex = [](char c) -> int {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'A' && c <= 'F') return c - 'A' + 10;
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      return -1;
    };
    const int hi = hex(text[3]), lo = hex(text[4]);
    if (hi >= 0 && lo >= 0) return std::string(1, static_cast<char>(hi * 16 + lo));
  }
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    if (text.substr(i, 3) == kSpace) {
      out.push_back(' ');
      i += 3;
    } else {
      out.push_back(text[i++]);
    }
  }
  return out;
}

}  // namespace kvz

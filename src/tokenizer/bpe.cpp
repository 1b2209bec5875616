// Byte-level BPE (GPT-2 family). Reference behaviour: HF tokenizers models/bpe/model.rs
// (merge_word, byte-level alphabet, unk_token = null drops unknown characters) and
// pre_tokenizers/byte_level.rs; llama.cpp src/llama-vocab.cpp llm_tokenizer_bpe_session.
#include <queue>

#include "core/error.h"
#include "tokenizer/models.h"
#include "tokenizer/unicode.h"

namespace kvz {

MergeTable MergeTable::build(const std::vector<std::string>& merges, const TokenIndex& index) {
  std::vector<std::pair<std::string, std::string>> pairs;
  pairs.reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const std::string& m = merges[rank];
    const size_t sp = m.find(' ', 1);  // a part is never empty; a leading ' ' would be part 1
    if (sp == std::string::npos || sp + 1 >= m.size())
      fail("tokenizer.ggml.merges[{}] = '{}': expected two space-separated tokens", rank, m);
    pairs.emplace_back(m.substr(0, sp), m.substr(sp + 1));
  }
  return build(pairs, index);
}

MergeTable MergeTable::build(const std::vector<std::pair<std::string, std::string>>& merges, const TokenIndex& index) {
  MergeTable t;
  t.map.reserve(merges.size() * 2);
  std::string joined;
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [a, b] = merges[rank];
    auto ia = index.find(a), ib = index.find(b);
    if (ia == index.end() || ib == index.end())
      fail("merges[{}] = '{} {}': part '{}' is not in the vocabulary", rank, a, b, ia == index.end() ? a : b);
    joined.assign(a).append(b);
    auto ij = index.find(joined);
    if (ij == index.end()) continue;
    // The first occurrence of a pair wins (a later duplicate has a worse rank).
    t.map.emplace(key(ia->second, ib->second), Entry{static_cast<int32_t>(rank), ij->second});
  }
  return t;
}

void bpe_apply_merges(std::vector<int32_t>& ids, const MergeTable& merges) {
  const int n = static_cast<int>(ids.size());
  if (n < 2) return;
  // Doubly linked list over symbol slots; a slot keeps its index when it absorbs its right
  // neighbour, so (rank, left slot) orders candidates exactly like HF's heap.
  std::vector<int> prev(n), next(n);
  for (int i = 0; i < n; ++i) {
    prev[i] = i - 1;
    next[i] = i + 1 < n ? i + 1 : -1;
  }
  struct Cand {
    int32_t rank;
    int left;
    int32_t l_id, r_id;
    bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : left > o.left; }
  };
  std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap;
  auto push = [&](int l) {
    const int r = next[l];
    if (r < 0) return;
    if (const auto* e = merges.find(ids[l], ids[r])) heap.push({e->rank, l, ids[l], ids[r]});
  };
  for (int i = 0; i + 1 < n; ++i) push(i);
  std::vector<char> dead(n, 0);
  while (!heap.empty()) {
    const Cand c = heap.top();
    heap.pop();
    const int l = c.left, r = next[l];
    // Stale when either side changed since the candidate was queued (a merged symbol is a
    // longer token, so its id cannot equal the old one).
    if (dead[l] || r < 0 || ids[l] != c.l_id || ids[r] != c.r_id) continue;
    ids[l] = merges.find(c.l_id, c.r_id)->result;
    dead[r] = 1;
    next[l] = next[r];
    if (next[r] >= 0) prev[next[r]] = l;
    if (prev[l] >= 0) push(prev[l]);
    push(l);
  }
  int w = 0;
  for (int i = 0; i >= 0; i = next[i]) ids[w++] = ids[i];
  ids.resize(w);
}

ByteLevelBpe::ByteLevelBpe(const VocabData& v, const TokenIndex& index)
    : pre_(v.pre), merges_(MergeTable::build(v.merges, index)), index_(&index) {
  const auto& b2c = byte_level::byte_to_cp();
  for (int b = 0; b < 256; ++b) {
    std::string s;
    utf8::append(s, b2c[b]);
    auto it = index.find(s);
    byte_id_[b] = it == index.end() ? -1 : it->second;
  }
  ignore_merges_ = v.pre == "llama-bpe" || v.pre == "llama3";
  nfc_ = v.pre == "qwen2" || v.pre == "deepseek-r1-qwen";
}

void ByteLevelBpe::encode_piece(std::string_view piece, std::vector<int32_t>& out) const {
  if (ignore_merges_) {
    auto it = index_->find(byte_level::encode(piece));
    if (it != index_->end()) {
      out.push_back(it->second);
      return;
    }
  }
  std::vector<int32_t> ids;
  ids.reserve(piece.size());
  for (unsigned char c : piece)
    if (byte_id_[c] >= 0) ids.push_back(byte_id_[c]);
  bpe_apply_merges(ids, merges_);
  out.insert(out.end(), ids.begin(), ids.end());
}

void ByteLevelBpe::encode(std::string_view fragment, std::vector<int32_t>& out) const {
  std::string normalized;
  if (nfc_ && !nfc::is_trivially_nfc(fragment)) {
    normalized = nfc::normalize(fragment);
    fragment = normalized;
  }
  std::vector<std::string_view> pieces;
  pre_.split(fragment, pieces);
  // Whole-piece vocab hits are common (most English words); they still go through the merge
  // loop to honour merge order, but the cache makes repeats cheap.
  cache_.encode(pieces, out, [this](std::string_view piece, std::vector<int32_t>& ids) { encode_piece(piece, ids); });
}

std::string ByteLevelBpe::token_bytes(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    uint32_t cp;
    const int n = utf8::decode(text, i, &cp);
    if (n == 0) {  // not UTF-8: keep the raw byte
      out.push_back(text[i++]);
      continue;
    }
    const int b = byte_level::cp_to_byte(cp);
    if (b >= 0)
      out.push_back(static_cast<char>(b));
    else
      out.append(text.substr(i, n));  // outside the alphabet: keep the character
    i += n;
  }
  return out;
}

}  // namespace kvz

// Byte-level BPE (GPT-2 family). Reference behaviour: HF tokenizers models/bpe/model.rs
// (merge_word, byte-level alphabet, unk_token = null drops unknown characters) and
// pre_tokenizers/byte_level.rs; llama.cpp src/llama-vocab.cpp llm_tokenizer_bpe_session.
#include <bit>
#include <queue>

#include "core/error.h"
#include "tokenizer/models.h"
#include "tokenizer/unicode.h"

namespace kvz {

TokenIndex::TokenIndex(const std::vector<std::string>& tokens) : tokens_(&tokens) {
  size_t n = 16;
  while (n < 2 * tokens.size()) n *= 2;
  slots_.assign(n, -1);
  mask_ = n - 1;
  for (size_t id = 0; id < tokens.size(); ++id) {
    size_t i = StringHash{}(tokens[id]) & mask_;
    while (slots_[i] >= 0 && tokens[static_cast<size_t>(slots_[i])] != tokens[id]) i = (i + 1) & mask_;
    if (slots_[i] < 0) slots_[i] = static_cast<int32_t>(id);  // else a repeat: the first id stays
  }
}

int32_t TokenIndex::find(std::string_view text) const {
  if (slots_.empty()) return -1;
  for (size_t i = StringHash{}(text) & mask_;; i = (i + 1) & mask_) {
    const int32_t id = slots_[i];
    if (id < 0 || (*tokens_)[static_cast<size_t>(id)] == text) return id;
  }
}

void MergeTable::rehash(size_t n_slots) {
  std::vector<Slot> old = std::move(slots_);
  slots_.assign(n_slots, Slot{});
  mask_ = n_slots - 1;
  shift_ = 64 - std::countr_zero(n_slots);
  n_ = 0;
  for (const Slot& sl : old)
    if (sl.key != kEmpty) insert(static_cast<int32_t>(sl.key >> 32), static_cast<int32_t>(sl.key & 0xffffffffu), sl.e);
}

void MergeTable::insert(int32_t l, int32_t r, Entry e) {
  if (4 * (n_ + 1) > 3 * slots_.size()) rehash(std::max<size_t>(16, 2 * slots_.size()));
  const uint64_t k = key(l, r);
  size_t i = slot_of(k);
  while (slots_[i].key != kEmpty) {
    if (slots_[i].key == k) return;
    i = (i + 1) & mask_;
  }
  slots_[i] = Slot{k, e};
  ++n_;
}

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
  size_t n_slots = 16;
  while (4 * merges.size() > 3 * n_slots) n_slots *= 2;
  t.rehash(n_slots);
  std::string joined;
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [a, b] = merges[rank];
    const int32_t ia = index.find(a), ib = index.find(b);
    if (ia < 0 || ib < 0) fail("merges[{}] = '{} {}': part '{}' is not in the vocabulary", rank, a, b, ia < 0 ? a : b);
    joined.assign(a).append(b);
    const int32_t ij = index.find(joined);
    if (ij < 0) continue;
    // The first occurrence of a pair wins (a later duplicate has a worse rank).
    t.insert(ia, ib, Entry{static_cast<int32_t>(rank), ij});
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
    byte_id_[b] = index.find(s);
  }
  ignore_merges_ = v.pre == "llama-bpe" || v.pre == "llama3";
  nfc_ = v.pre == "qwen2" || v.pre == "deepseek-r1-qwen";
}

void ByteLevelBpe::encode_piece(std::string_view piece, std::vector<int32_t>& out) const {
  if (ignore_merges_) {
    const int32_t id = index_->find(byte_level::encode(piece));
    if (id >= 0) {
      out.push_back(id);
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

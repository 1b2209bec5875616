// Internal tokenizer models behind kvz::Tokenizer: byte-level BPE (GGUF model "gpt2") and
// SentencePiece-style BPE with byte fallback (GGUF model "llama"). Each encodes one raw
// text fragment (special tokens already split out) into ids.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/pretokenize.h"
#include "tokenizer/tokenizer.h"

namespace kvz {

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

// Token text -> id, looked up with a string_view (no allocation). Open addressing over ids:
// the texts are the vocabulary's own strings (not copied), a slot is 4 bytes and the table
// at most half full (SmolLM2's 49,152 tokens: 512 KiB, against 3.9 MB as a hash map of
// strings). The vocabulary must outlive the index and not move.
class TokenIndex {
 public:
  TokenIndex() = default;
  explicit TokenIndex(const std::vector<std::string>& tokens);  // a repeated text keeps its first id
  int32_t find(std::string_view text) const;                     // -1 when absent

 private:
  const std::vector<std::string>* tokens_ = nullptr;
  std::vector<int32_t> slots_;  // an id, or -1
  size_t mask_ = 0;
};

// Per-piece encoding cache (piece bytes -> ids) of the BPE models. Guarded by a mutex so a
// const encode() can run from several threads; cleared when it reaches kMax entries.
class PieceCache {
 public:
  // Appends the ids of every piece to out, from the cache or from encode(piece, ids).
  template <typename Encode>
  void encode(const std::vector<std::string_view>& pieces, std::vector<int32_t>& out, Encode&& encode) const {
    std::vector<int32_t> tmp;
    for (auto piece : pieces) {
      {
        std::lock_guard<std::mutex> lk(mu_);
        auto it = map_.find(piece);
        if (it != map_.end()) {
          out.insert(out.end(), it->second.begin(), it->second.end());
          continue;
        }
      }
      tmp.clear();
      encode(piece, tmp);
      out.insert(out.end(), tmp.begin(), tmp.end());
      if (piece.size() <= 256) {
        std::lock_guard<std::mutex> lk(mu_);
        if (map_.size() >= kMax) map_.clear();
        map_.emplace(std::string(piece), tmp);
      }
    }
  }

 private:
  static constexpr size_t kMax = 1 << 16;
  mutable std::mutex mu_;
  mutable std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>> map_;
};

// Merge rules as (left id, right id) -> (rank, merged id); rank = index in the merges list.
// Open addressing, at most three quarters full: 16 bytes a slot (SmolLM2's 48,900 rules:
// 1 MiB, against 2 MB as a hash map).
struct MergeTable {
  struct Entry {
    int32_t rank;
    int32_t result;
  };

  static uint64_t key(int32_t l, int32_t r) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(l)) << 32) | static_cast<uint32_t>(r);
  }
  const Entry* find(int32_t l, int32_t r) const {
    if (slots_.empty()) return nullptr;
    const uint64_t k = key(l, r);
    for (size_t i = slot_of(k);; i = (i + 1) & mask_) {
      if (slots_[i].key == k) return &slots_[i].e;
      if (slots_[i].key == kEmpty) return nullptr;
    }
  }
  // Adds a rule unless the pair has one already (the first, better-ranked rule wins).
  void insert(int32_t l, int32_t r, Entry e);
  size_t size() const { return n_; }
  // Parses "a b" rules (split at the first space). Throws kvz::Error on a malformed rule or
  // one whose parts are not tokens; a rule whose result is not a token is skipped, as HF
  // does not accept it either.
  static MergeTable build(const std::vector<std::string>& merges, const TokenIndex& index);
  // Same from (left, right) pairs (tokenizer.json); parts may contain spaces.
  static MergeTable build(const std::vector<std::pair<std::string, std::string>>& merges, const TokenIndex& index);

 private:
  static constexpr uint64_t kEmpty = ~uint64_t{0};  // never a key: ids are below 2^31
  struct Slot {
    uint64_t key = kEmpty;
    Entry e{};
  };
  size_t slot_of(uint64_t k) const { return static_cast<size_t>((k * 0x9E3779B97F4A7C15ull) >> shift_); }
  void rehash(size_t n_slots);
  std::vector<Slot> slots_;
  size_t mask_ = 0, n_ = 0;
  int shift_ = 64;
};

// Applies merges to `ids` in place: repeatedly merge the adjacent pair with the lowest
// rank, leftmost first on ties (HF tokenizers models/bpe/word.rs merge_all). O(n log n).
void bpe_apply_merges(std::vector<int32_t>& ids, const MergeTable& merges);

// Byte-level BPE: pre-tokenize with the named regexes, map each piece's bytes into the
// GPT-2 alphabet, start from one symbol per byte, merge. A byte whose single-character
// token is missing from the vocab is dropped (HF BPE with unk_token = null does the same;
// SmolLM2's vocab lacks 21 of the 256, e.g. 0x04 and 0xF5-0xFF).
class ByteLevelBpe {
 public:
  ByteLevelBpe(const VocabData& v, const TokenIndex& index);
  void encode(std::string_view fragment, std::vector<int32_t>& out) const;
  // Decoded bytes of a normal token (its text mapped back through the byte alphabet).
  static std::string token_bytes(std::string_view text);

 private:
  void encode_piece(std::string_view piece, std::vector<int32_t>& out) const;

  PreTokenizer pre_;
  MergeTable merges_;
  const TokenIndex* index_;
  int32_t byte_id_[256];
  // HF BPE ignore_merges (Llama 3): a piece that is itself a token is emitted as is.
  bool ignore_merges_ = false;
  // NFC normalizer before pre-tokenization (Qwen2 tokenizer.json).
  bool nfc_ = false;
  PieceCache cache_;
};

// SentencePiece BPE (sentencepiece bpe_model.cc semantics, as llama.cpp llm_tokenizer_spm):
// spaces become U+2581, the text is split into UTF-8 characters, and the adjacent pair
// whose concatenation is a vocab piece with the highest score is merged (leftmost on ties)
// until none is left. Merged Unused pieces are split back into their parts; characters
// that are not pieces become <0xXX> byte tokens (or unk when there is no byte token).
class SpmBpe {
 public:
  SpmBpe(const VocabData& v, const TokenIndex& index);
  // at_text_start: the fragment begins the text, so add_space_prefix applies.
  void encode(std::string_view fragment, bool at_text_start, std::vector<int32_t>& out) const;
  static std::string token_bytes(std::string_view text, TokenType type);

 private:
  const VocabData* v_;
  const TokenIndex* index_;
  int32_t byte_id_[256];
};

// Hugging Face tokenizer.json BPE (tokenizers models/bpe/model.rs merge_word + word.rs
// merge_all) behind the HfPipeline normalizer / pre-tokenizer: each piece is split into
// characters (bytes mapped to the GPT-2 alphabet first when byte_level); a character
// that is not a token becomes its <0xHH> tokens (byte_fallback) or unk (fused when
// fuse_unk) or is dropped (no unk); then the lowest-rank merges apply.
class HfBpe {
 public:
  HfBpe(const VocabData& v, const TokenIndex& index);
  // at_text_start: the fragment begins the text (Metaspace prepend_scheme "first").
  void encode(std::string_view fragment, bool at_text_start, std::vector<int32_t>& out) const;

 private:
  void encode_piece(std::string_view piece, std::vector<int32_t>& out) const;

  const HfPipeline* hf_;
  const TokenIndex* index_;
  int32_t unk_id_;
  PreTokenizer pre_;
  MergeTable merges_;
  int32_t byte_id_[256];  // <0xHH> tokens, -1 when absent
  PieceCache cache_;
};

}  // namespace kvz

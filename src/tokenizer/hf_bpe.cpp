// HF tokenizer.json BPE. Reference behaviour (huggingface/tokenizers): normalizers
// (nfc, replace, prepend), pre_tokenizers (metaspace, split, digits, byte_level),
// models/bpe/model.rs BPE::merge_word (per-character symbols, byte_fallback to <0xHH>,
// unk with fuse_unk, ignore_merges) and models/bpe/word.rs Word::merge_all.
#include "core/error.h"
#include "tokenizer/models.h"
#include "tokenizer/unicode.h"

namespace kvz {

namespace {

void replace_all(std::string& s, const std::string& from, const std::string& to) {
  if (from.empty()) return;
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  for (size_t j; (j = s.find(from, i)) != std::string::npos; i = j + from.size()) out.append(s, i, j - i).append(to);
  out.append(s, i, std::string::npos);
  s.swap(out);
}

}  // namespace

HfBpe::HfBpe(const VocabData& v, const TokenIndex& index)
    : hf_(&v.hf),
      index_(&index),
      unk_id_(v.unk_id),
      pre_(PreTokenizer::from_patterns(v.hf.split_patterns)),
      merges_(MergeTable::build(v.hf.merges, index)) {
  for (int b = 0; b < 256; ++b) {
    byte_id_[b] = index.find(fmt::format("<0x{:02X}>", b));
  }
}

void HfBpe::encode_piece(std::string_view piece, std::vector<int32_t>& out) const {
  const HfPipeline& hf = *hf_;
  std::string mapped;
  if (hf.byte_level) {
    mapped = byte_level::encode(piece);
    piece = mapped;
  }
  if (hf.ignore_merges) {
    const int32_t id = index_->find(piece);
    if (id >= 0) {
      out.push_back(id);
      return;
    }
  }
  std::vector<int32_t> ids;
  ids.reserve(piece.size());
  bool prev_unk = false;
  for (size_t i = 0; i < piece.size();) {
    uint32_t cp;
    const int n = std::max(1, utf8::decode(piece, i, &cp));
    const std::string_view ch = piece.substr(i, n);
    i += n;
    const int32_t id = index_->find(ch);
    if (id >= 0) {
      ids.push_back(id);
      prev_unk = false;
      continue;
    }
    if (hf.byte_fallback) {
      bool all = true;
      for (unsigned char c : ch) all = all && byte_id_[c] >= 0;
      if (all) {
        for (unsigned char c : ch) ids.push_back(byte_id_[c]);
        prev_unk = false;
        continue;
      }
    }
    if (unk_id_ < 0) continue;  // no unk token: the character is dropped
    if (!(hf.fuse_unk && prev_unk)) ids.push_back(unk_id_);
    prev_unk = true;
  }
  bpe_apply_merges(ids, merges_);
  out.insert(out.end(), ids.begin(), ids.end());
}

void HfBpe::encode(std::string_view fragment, bool at_text_start, std::vector<int32_t>& out) const {
  const HfPipeline& hf = *hf_;
  std::string s;
  if (hf.nfc && !nfc::is_trivially_nfc(fragment))
    s = nfc::normalize(fragment);
  else
    s.assign(fragment);
  for (const auto& [from, to] : hf.replace) replace_all(s, from, to);
  if (!hf.prepend.empty() && !s.empty()) s.insert(0, hf.prepend);
  if (!hf.metaspace.empty()) {
    replace_all(s, " ", hf.metaspace);
    const bool prefix = hf.metaspace_prepend == "always" || (hf.metaspace_prepend == "first" && at_text_start);
    if (prefix && s.compare(0, hf.metaspace.size(), hf.metaspace) != 0) s.insert(0, hf.metaspace);
  }
  if (s.empty()) return;

  std::vector<std::string_view> pieces;
  pre_.split(s, pieces);
  cache_.encode(pieces, out, [this](std::string_view piece, std::vector<int32_t>& ids) { encode_piece(piece, ids); });
}

}  // namespace kvz

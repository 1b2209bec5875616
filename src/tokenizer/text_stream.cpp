#include "tokenizer/text_stream.h"

#include <algorithm>

namespace kvz {

size_t utf8_complete_prefix(const std::string& s) {
  // Walk back over at most 3 continuation bytes to the lead byte of the last character.
  size_t i = s.size();
  int cont = 0;
  while (i > 0 && cont < 4 && (static_cast<unsigned char>(s[i - 1]) & 0xC0) == 0x80) {
    --i;
    ++cont;
  }
  if (i == 0) return s.size();  // no lead byte: not UTF-8 we can judge, send as is
  const unsigned char lead = static_cast<unsigned char>(s[i - 1]);
  const int need = lead >= 0xF0 ? 3 : lead >= 0xE0 ? 2 : lead >= 0xC0 ? 1 : 0;
  return cont >= need ? s.size() : i - 1;
}

bool TextStream::push(const std::vector<int32_t>& ids, std::string& piece) {
  piece.clear();
  if (stopped_) return true;
  text_ = tok_->decode(ids, /*skip_special=*/true);
  // The earliest stop string wins; it can only start in the part not yet sent.
  size_t cut = std::string::npos;
  for (const auto& st : stop_) {
    const size_t from = sent_ >= st.size() ? sent_ - st.size() + 1 : 0;
    const size_t p = text_.find(st, std::min(from, text_.size()));
    if (p != std::string::npos) cut = std::min(cut, p);
  }
  if (cut != std::string::npos) {
    text_.resize(std::max(cut, sent_));
    piece = text_.substr(sent_);
    sent_ = text_.size();
    stopped_ = true;
    return true;
  }
  size_t safe = utf8_complete_prefix(text_);
  for (const auto& st : stop_)  // a tail that may grow into a stop string waits
    for (size_t k = std::min(st.size() - 1, text_.size()); k > 0; --k)
      if (text_.compare(text_.size() - k, k, st, 0, k) == 0) {
        safe = std::min(safe, text_.size() - k);
        break;
      }
  if (safe > sent_) {
    piece = text_.substr(sent_, safe - sent_);
    sent_ = safe;
  }
  return false;
}

std::string TextStream::flush(const std::vector<int32_t>& ids) {
  if (!stopped_ && tok_) text_ = tok_->decode(ids, true);
  if (sent_ >= text_.size()) return "";
  std::string rest = text_.substr(sent_);
  sent_ = text_.size();
  return rest;
}

}  // namespace kvz

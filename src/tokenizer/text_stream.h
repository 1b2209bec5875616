// The text of a generation as it streams: decodes the generated ids, cuts at the first stop
// string, and holds back what may still turn out to be one (a tail that is a prefix of a
// stop string) or an incomplete UTF-8 character, so a client never receives text that a
// later token takes back.
#pragma once

#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace kvz {

class TextStream {
 public:
  TextStream() = default;
  TextStream(const Tokenizer& tok, std::vector<std::string> stop) : tok_(&tok), stop_(std::move(stop)) {}

  // ids: every generated id so far. Sets `piece` to the new text that is safe to send and
  // returns true when a stop string was reached (the text ends before it).
  bool push(const std::vector<int32_t>& ids, std::string& piece);
  // What remains to send at the end (held-back text that never became a stop string).
  std::string flush(const std::vector<int32_t>& ids);
  const std::string& text() const { return text_; }

 private:
  const Tokenizer* tok_ = nullptr;
  std::vector<std::string> stop_;
  std::string text_;   // the whole text (cut at a stop string once stopped)
  size_t sent_ = 0;    // bytes of text_ already handed out
  bool stopped_ = false;
};

// Bytes of s that end on a complete UTF-8 character (an incomplete tail is left out).
size_t utf8_complete_prefix(const std::string& s);

}  // namespace kvz

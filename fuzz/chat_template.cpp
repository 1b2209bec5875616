// Chat-template rendering: the input is a model's Jinja template text. Its family and
// default system prompt are read from it (detect_chat_format) and five conversations are
// rendered with and without the generation prompt: none, one user turn, a system turn
// with two exchanges, two user turns in a row (which Gemma refuses), and the input text
// itself as the system and user turns (the trimming of arbitrary bytes).
#include <string>
#include <vector>

#include "common.h"
#include "targets.h"
#include "tokenizer/chat_template.h"

namespace kvz::fuzz {

std::string chat_template(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  const std::vector<std::vector<ChatMessage>> chats = {
      {},
      {{"user", " Hi there! "}},
      {{"system", "Be brief."}, {"user", "2+2?"}, {"assistant", "4"}, {"user", "\xc3\xa9\xe2\x80\xa8 "}},
      {{"user", "a"}, {"user", "b"}},
      {{"system", text}, {"user", text}},
  };
  ChatFormat format;
  std::string last = refused([&] { format = detect_chat_format(text); });
  if (!last.empty()) return last;
  chat_family_name(format.family);
  for (const auto& msgs : chats)
    for (const bool agp : {false, true}) {
      const std::string r = refused([&] { render_chat(format, msgs, agp); });
      if (!r.empty()) last = r;
    }
  return last;
}

}  // namespace kvz::fuzz

KVZ_FUZZ_ENTRY(chat_template)

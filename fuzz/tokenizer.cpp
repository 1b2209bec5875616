// Hugging Face tokenizer loader (vocab_from_hf) and the tokenizer built from it. The input
// is one JSON object bundling a folder's files, {"tokenizer.json": {..},
// "tokenizer_config.json": {..}, "generation_config.json": {..}, "chat_template.jinja":
// "..."} (all but the first optional), so the structure-aware mutator edits all of them; an
// input that is not such an object is read as tokenizer.json text (parse errors included).
// A vocabulary that loads becomes a Tokenizer, which encodes and decodes a short text.
#include <optional>
#include <string>
#include <string_view>

#include "common.h"
#include "json_mutator.h"
#include "targets.h"
#include "tokenizer/hf_vocab.h"

namespace kvz::fuzz {

std::string tokenizer(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const nlohmann::json doc = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  return refused([&] {
    std::optional<HfTokenizerFiles> files;
    if (doc.is_object() && doc.contains("tokenizer.json")) {
      auto part = [&](const char* name) -> std::optional<JsonReader> {
        const auto it = doc.find(name);
        if (it == doc.end()) return std::nullopt;
        return JsonReader::borrow(*it, std::string("fuzz/") + name);
      };
      files.emplace(HfTokenizerFiles{*part("tokenizer.json"), part("tokenizer_config.json"),
                                     part("generation_config.json"), ""});
      if (const auto t = part("chat_template.jinja")) files->chat_template = t->str();
    } else {
      files.emplace(HfTokenizerFiles{JsonReader::parse(text, "fuzz/tokenizer.json"), std::nullopt, std::nullopt, ""});
    }
    const Tokenizer tok(vocab_from_hf(*files));
    for (const bool special : {false, true}) {
      const std::vector<int32_t> ids = tok.encode("Hello, world! <|im_start|>user\n 12345  \xc3\xa9t\xc3\xa9\t", special);
      tok.decode(ids, special);
    }
    for (int32_t id = 0; id < tok.n_vocab() && id < 64; ++id) tok.token_bytes(id);
  });
}

}  // namespace kvz::fuzz

KVZ_FUZZ_ENTRY(tokenizer)
KVZ_FUZZ_JSON_MUTATOR()

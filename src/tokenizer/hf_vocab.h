// A Hugging Face tokenizer from its JSON files already read (tokenizer/hf_vocab.cpp):
// vocab_from_hf(dir) reads a folder's files and calls this; the tokenizer fuzz target
// gives it documents parsed from memory. Each reader names its file in errors.
#pragma once

#include <optional>
#include <string>

#include "io/json_file.h"
#include "tokenizer/tokenizer.h"

namespace kvz {

struct HfTokenizerFiles {
  JsonReader tokenizer;                  // tokenizer.json
  std::optional<JsonReader> config;      // tokenizer_config.json
  std::optional<JsonReader> generation;  // generation_config.json
  std::string chat_template;             // chat_template.jinja; "" when absent
};

VocabData vocab_from_hf(const HfTokenizerFiles& files);

}  // namespace kvz

// Pre-tokenizers for byte-level BPE: the regex splits HF `tokenizers` applies before BPE,
// selected by the GGUF `tokenizer.ggml.pre` label (llama.cpp's names). Each stage is a
// Split(regex, behavior=Isolated): matches and the gaps between them both become pieces.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace kvz {

class PreTokenizer {
 public:
  // Throws kvz::Error for an unknown name (the message lists the supported ones).
  explicit PreTokenizer(const std::string& name);
  // Explicit stages (HF tokenizer.json Split / Digits / ByteLevel regexes, Oniguruma
  // syntax), each an Isolated split applied to the pieces of the previous one.
  static PreTokenizer from_patterns(const std::vector<std::string>& patterns);
  ~PreTokenizer();
  PreTokenizer(PreTokenizer&&) noexcept;
  PreTokenizer& operator=(PreTokenizer&&) noexcept;

  // Appends the pieces of `text` (views into it, in order, concatenating to `text`).
  // Ill-formed UTF-8 bytes never reach the regexes: each becomes a one-byte piece.
  // Thread-safe (compiled patterns are shared read-only; match data is per call).
  void split(std::string_view text, std::vector<std::string_view>& out) const;

  static bool known(const std::string& name);
  // The HF regexes of each stage, for diagnostics and tests.
  const std::vector<std::string>& patterns() const { return patterns_; }
  // The GPT-2 ByteLevel(use_regex=true) pattern.
  static const char* gpt2_pattern();

 private:
  PreTokenizer() = default;
  void add_stage(const std::string& pat);
  struct Stage;
  std::vector<std::string> patterns_;
  std::vector<std::unique_ptr<Stage>> stages_;
};

}  // namespace kvz

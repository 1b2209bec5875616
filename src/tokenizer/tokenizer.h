// Tokenizer built from a model's vocabulary metadata (GGUF `tokenizer.ggml.*` keys, and
// later HF tokenizer.json). Two models: byte-level BPE ("gpt2": SmolLM2, Llama 3, Qwen)
// with the pre-tokenizer regex named by `tokenizer.ggml.pre`, and SentencePiece-style
// BPE with byte fallback ("llama" model type: Gemma 3). Ids must equal HF `tokenizers`.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kvz {

class TensorSource;

// GGUF token types (tokenizer.ggml.token_type).
enum class TokenType : int32_t {
  Undefined = 0,
  Normal = 1,
  Unknown = 2,
  Control = 3,
  UserDefined = 4,
  Unused = 5,
  Byte = 6,
};

// A Hugging Face tokenizer.json BPE pipeline (VocabData::model == "hf-bpe"), reduced to
// the pieces SmolLM2, Qwen2.5/3, Llama 3 and Gemma 3 files use. Applied in this order to
// each stretch of text between added tokens, as HF `tokenizers` does.
struct HfPipeline {
  // normalizer
  bool nfc = false;
  std::vector<std::pair<std::string, std::string>> replace;  // literal pattern -> content, in order
  std::string prepend;                                      // Prepend(...) normalizer
  // pre-tokenizer: Metaspace (spaces -> replacement, optional prefix), then regex stages
  // (Split Isolated, Digits, ByteLevel use_regex), then the byte-level alphabet.
  std::string metaspace;            // replacement char; empty = no Metaspace
  std::string metaspace_prepend;    // "always", "first" or "never"
  bool metaspace_split = false;
  std::vector<std::string> split_patterns;
  bool byte_level = false;
  // model (BPE)
  bool byte_fallback = false, ignore_merges = false, fuse_unk = false;
  std::vector<std::pair<std::string, std::string>> merges;  // rank = index; emptied once a Tokenizer holds them
  // decoder: strip this many leading spaces (Strip decoder / Metaspace prefix)
  int decode_strip_start = 0;
};

// Everything a tokenizer needs, independent of the file format it came from.
struct VocabData {
  std::string model;                // "gpt2" (byte-level BPE), "llama" (SentencePiece BPE), "hf-bpe"
  std::string pre;                  // pre-tokenizer name: "smollm", "llama-bpe", "qwen2", "default", ...
  std::vector<std::string> tokens;  // id -> token text (byte-level alphabet for gpt2)
  std::vector<float> scores;        // id -> score (SentencePiece), may be empty
  std::vector<TokenType> types;     // id -> type, may be empty (then all Normal)
  std::vector<std::string> merges;  // "a b" merge rules, rank = index (gpt2 only); emptied once a Tokenizer holds them
  int32_t bos_id = -1, eos_id = -1, eot_id = -1, unk_id = -1, pad_id = -1;
  bool add_bos = false, add_eos = false, add_space_prefix = false;
  std::vector<int32_t> eog_ids;     // every id that ends generation (eos, eot, <|im_end|>, ...)
  std::string chat_template;        // Jinja text from the model, may be empty
  HfPipeline hf;                    // model == "hf-bpe" only
};

// Reads tokenizer.ggml.* from a GGUF file. Throws kvz::Error naming the missing/bad key.
VocabData vocab_from_gguf(const TensorSource& f);
// Reads tokenizer.json, tokenizer_config.json (bos/eos, chat_template), chat_template.jinja
// and generation_config.json (eos ids) from a Hugging Face model folder.
VocabData vocab_from_hf(const std::string& dir);
// Adds eos/eot and the control tokens llama.cpp treats as end-of-generation to eog_ids.
void add_default_eog(VocabData& v);

class Tokenizer {
 public:
  explicit Tokenizer(VocabData vocab);  // throws kvz::Error on an unsupported model/pre
  ~Tokenizer();
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;

  // parse_special: text like "<|im_start|>" becomes its special id (as HF does for added
  // tokens). add_bos follows the vocab's add_bos flag only when `add_special` is true.
  // UserDefined tokens (Gemma's whitespace runs and html tags, Qwen's <tool_call>) are
  // matched whatever parse_special says, as HF does for non-special added tokens.
  // Thread-safe: const methods may run concurrently (the per-piece cache is locked).
  std::vector<int32_t> encode(std::string_view text, bool add_special = false,
                              bool parse_special = true) const;

  // Exact bytes of one token (special tokens render as their text).
  std::string token_bytes(int32_t id) const;
  // Concatenated bytes; skip_special drops control tokens.
  std::string decode(const std::vector<int32_t>& ids, bool skip_special = false) const;

  int32_t n_vocab() const;
  const VocabData& vocab() const;
  bool is_eog(int32_t id) const;
  // id of an exact token text, or -1.
  int32_t find(std::string_view token_text) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Streaming decode: feeds token bytes and returns only complete UTF-8 sequences, holding
// back a partial multi-byte character until its continuation arrives.
class Utf8Stream {
 public:
  std::string push(std::string_view bytes);
  std::string flush();  // whatever is left (possibly invalid UTF-8)

 private:
  std::string pending_;
};

}  // namespace kvz

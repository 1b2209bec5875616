// VocabData from GGUF tokenizer.ggml.* metadata (llama.cpp convert_hf_to_gguf.py writes
// them; llama.cpp src/llama-vocab.cpp llama_vocab::impl::load reads them).
#include <algorithm>

#include "core/error.h"
#include "io/gguf.h"
#include "tokenizer/tokenizer.h"

namespace kvz {

namespace {

// Texts llama.cpp also treats as end-of-generation when they are control tokens.
constexpr const char* kEogTexts[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
                                     "<|eom_id|>", "<EOT>", "<|end_of_text|>", "<|return|>", "<|call|>"};

int32_t opt_id(const TensorSource& f, const char* key, size_t n_vocab) {
  auto v = f.get_int_opt(key);
  if (!v) return -1;
  // Some converters write -1 (or UINT32_MAX) for "none".
  if (*v < 0 || *v == 0xFFFFFFFFll) return -1;
  if (static_cast<uint64_t>(*v) >= n_vocab)
    fail("{}: {} = {} is out of range for a vocabulary of {} tokens", f.path(), key, *v, n_vocab);
  return static_cast<int32_t>(*v);
}

}  // namespace

VocabData vocab_from_gguf(const TensorSource& f) {
  VocabData v;
  v.model = f.get_str("tokenizer.ggml.model");
  v.pre = f.get_str_opt("tokenizer.ggml.pre").value_or("default");
  v.tokens = f.get_str_array("tokenizer.ggml.tokens");
  const size_t n = v.tokens.size();
  if (n == 0) fail("{}: tokenizer.ggml.tokens is empty", f.path());

  if (f.has("tokenizer.ggml.scores")) {
    const auto s = f.get_float_array("tokenizer.ggml.scores");
    if (s.size() != n) fail("{}: tokenizer.ggml.scores has {} entries, expected {} (one per token)", f.path(), s.size(), n);
    v.scores.assign(s.begin(), s.end());
  }
  if (f.has("tokenizer.ggml.token_type")) {
    const auto t = f.get_int_array("tokenizer.ggml.token_type");
    if (t.size() != n)
      fail("{}: tokenizer.ggml.token_type has {} entries, expected {} (one per token)", f.path(), t.size(), n);
    v.types.resize(n);
    for (size_t i = 0; i < n; ++i) {
      if (t[i] < 0 || t[i] > 6)
        fail("{}: tokenizer.ggml.token_type[{}] = {} is not a token type (0..6)", f.path(), i, t[i]);
      v.types[i] = static_cast<TokenType>(t[i]);
    }
  }
  if (f.has("tokenizer.ggml.merges")) v.merges = f.get_str_array("tokenizer.ggml.merges");
  if (v.model == "gpt2" && v.merges.empty()) fail("{}: byte-level BPE vocabulary without tokenizer.ggml.merges", f.path());

  v.bos_id = opt_id(f, "tokenizer.ggml.bos_token_id", n);
  v.eos_id = opt_id(f, "tokenizer.ggml.eos_token_id", n);
  v.eot_id = opt_id(f, "tokenizer.ggml.eot_token_id", n);
  v.unk_id = opt_id(f, "tokenizer.ggml.unknown_token_id", n);
  v.pad_id = opt_id(f, "tokenizer.ggml.padding_token_id", n);
  // Defaults as llama.cpp: SentencePiece vocabularies add BOS and a dummy space prefix
  // unless the file says otherwise.
  const bool spm = v.model == "llama";
  v.add_bos = f.get_bool_opt("tokenizer.ggml.add_bos_token").value_or(spm);
  v.add_eos = f.get_bool_opt("tokenizer.ggml.add_eos_token").value_or(false);
  v.add_space_prefix = f.get_bool_opt("tokenizer.ggml.add_space_prefix").value_or(spm);
  v.chat_template = f.get_str_opt("tokenizer.chat_template").value_or("");

  if (const int32_t eom = opt_id(f, "tokenizer.ggml.eom_token_id", n); eom >= 0) v.eog_ids.push_back(eom);
  add_default_eog(v);
  return v;
}

void add_default_eog(VocabData& v) {
  for (int32_t id : {v.eos_id, v.eot_id})
    if (id >= 0) v.eog_ids.push_back(id);
  for (const char* text : kEogTexts) {
    auto it = std::find(v.tokens.begin(), v.tokens.end(), text);
    if (it == v.tokens.end()) continue;
    const auto id = static_cast<int32_t>(it - v.tokens.begin());
    if (!v.types.empty() && v.types[id] != TokenType::Control && v.types[id] != TokenType::UserDefined) continue;
    v.eog_ids.push_back(id);
  }
  std::sort(v.eog_ids.begin(), v.eog_ids.end());
  v.eog_ids.erase(std::unique(v.eog_ids.begin(), v.eog_ids.end()), v.eog_ids.end());
}

}  // namespace kvz

// Tokenizer front end: special-token partition, model dispatch, decode, Utf8Stream.
// Special tokens follow HF added-token semantics (leftmost-longest match over the raw
// text, never run through the model): Control and Unknown tokens only when parse_special,
// UserDefined tokens always (llama.cpp tokenizer_st_partition does the same).
#include <algorithm>

#include "core/error.h"
#include "tokenizer/models.h"
#include "tokenizer/unicode.h"

namespace kvz {

namespace {

// Byte trie over special-token texts. Edges live in one hash map keyed (node << 8 | byte).
class SpecialMatcher {
 public:
  void add(std::string_view text, int32_t id, bool always) {
    if (text.empty()) return;
    int node = 0;
    for (unsigned char c : text) {
      const uint64_t k = (static_cast<uint64_t>(node) << 8) | c;
      auto it = edges_.find(k);
      if (it == edges_.end()) {
        nodes_.push_back({});
        it = edges_.emplace(k, static_cast<int>(nodes_.size()) - 1).first;
      }
      node = it->second;
    }
    // The first token with a given text wins (GGUF vocabs have no duplicates in practice).
    if (nodes_[node].id < 0) nodes_[node] = {id, always};
    first_[static_cast<unsigned char>(text[0])] = true;
  }

  // Longest special token starting at text[pos]: returns its length and sets *id, or 0.
  size_t match(std::string_view text, size_t pos, bool parse_special, int32_t* id) const {
    if (!first_[static_cast<unsigned char>(text[pos])]) return 0;
    int node = 0;
    size_t best = 0;
    for (size_t i = pos; i < text.size(); ++i) {
      auto it = edges_.find((static_cast<uint64_t>(node) << 8) | static_cast<unsigned char>(text[i]));
      if (it == edges_.end()) break;
      node = it->second;
      const Node& nd = nodes_[node];
      if (nd.id >= 0 && (parse_special || nd.always)) {
        best = i + 1 - pos;
        *id = nd.id;
      }
    }
    return best;
  }

 private:
  struct Node {
    int32_t id = -1;
    bool always = false;
  };
  std::vector<Node> nodes_{Node{}};
  std::unordered_map<uint64_t, int> edges_;
  bool first_[256] = {};
};

}  // namespace

struct Tokenizer::Impl {
  VocabData v;
  TokenIndex index;
  std::vector<std::string> bytes;  // id -> decoded bytes
  std::vector<char> eog;           // id -> ends generation
  SpecialMatcher specials;
  std::unique_ptr<ByteLevelBpe> bpe;
  std::unique_ptr<SpmBpe> spm;
  std::unique_ptr<HfBpe> hf;

  TokenType type(int32_t id) const { return v.types.empty() ? TokenType::Normal : v.types[id]; }
};

Tokenizer::Tokenizer(VocabData vocab) : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.v = std::move(vocab);
  VocabData& v = m.v;
  const size_t n = v.tokens.size();
  if (n == 0) fail("tokenizer: the vocabulary is empty");
  if (!v.types.empty() && v.types.size() != n)
    fail("tokenizer: {} token types for {} tokens", v.types.size(), n);
  if (!v.scores.empty() && v.scores.size() != n)
    fail("tokenizer: {} scores for {} tokens", v.scores.size(), n);
  for (int32_t* id : {&v.bos_id, &v.eos_id, &v.eot_id, &v.unk_id, &v.pad_id})
    if (*id >= static_cast<int64_t>(n)) fail("tokenizer: special token id {} >= n_vocab {}", *id, n);

  m.index = TokenIndex(v.tokens);

  if (v.model == "gpt2") {
    m.bpe = std::make_unique<ByteLevelBpe>(v, m.index);
  } else if (v.model == "llama") {
    m.spm = std::make_unique<SpmBpe>(v, m.index);
  } else if (v.model == "hf-bpe") {
    m.hf = std::make_unique<HfBpe>(v, m.index);
  } else {
    fail("tokenizer.ggml.model '{}' is not supported (supported: gpt2, llama, hf-bpe)", v.model);
  }

  m.bytes.resize(n);
  for (size_t i = 0; i < n; ++i) {
    const auto t = m.type(static_cast<int32_t>(i));
    const auto& text = v.tokens[i];
    if (t == TokenType::Control || t == TokenType::UserDefined || t == TokenType::Unknown ||
        t == TokenType::Unused) {
      // Added tokens render as their text in both models (HF decodes added tokens
      // verbatim); SPM user-defined pieces still spell spaces as U+2581.
      m.bytes[i] = (m.spm && t == TokenType::UserDefined) ? SpmBpe::token_bytes(text, t) : text;
    } else if (m.hf) {
      // HF decoders: ByteLevel maps the alphabet back; otherwise ByteFallback + Replace('▁', ' ').
      m.bytes[i] = v.hf.byte_level ? ByteLevelBpe::token_bytes(text) : SpmBpe::token_bytes(text, t);
    } else {
      m.bytes[i] = m.bpe ? ByteLevelBpe::token_bytes(text) : SpmBpe::token_bytes(text, t);
    }
    if (t == TokenType::Control || t == TokenType::Unknown)
      m.specials.add(text, static_cast<int32_t>(i), false);
    else if (t == TokenType::UserDefined)
      m.specials.add(text, static_cast<int32_t>(i), true);
  }

  // The merge rules live in the model's MergeTable now (1.5 MB of strings for SmolLM2).
  std::vector<std::string>().swap(v.merges);
  std::vector<std::pair<std::string, std::string>>().swap(v.hf.merges);

  m.eog.assign(n, 0);
  for (int32_t id : v.eog_ids)
    if (id >= 0 && id < static_cast<int32_t>(n)) m.eog[id] = 1;
  for (int32_t id : {v.eos_id, v.eot_id})
    if (id >= 0) m.eog[id] = 1;
}

Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special, bool parse_special) const {
  const Impl& m = *impl_;
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 4);
  if (add_special && m.v.add_bos && m.v.bos_id >= 0) out.push_back(m.v.bos_id);

  auto encode_raw = [&](size_t b, size_t e) {
    if (e <= b) return;
    const auto frag = text.substr(b, e - b);
    if (m.bpe)
      m.bpe->encode(frag, out);
    else if (m.hf)
      m.hf->encode(frag, b == 0, out);
    else
      m.spm->encode(frag, b == 0, out);
  };
  size_t raw_start = 0;
  for (size_t i = 0; i < text.size();) {
    int32_t id = -1;
    const size_t len = m.specials.match(text, i, parse_special, &id);
    if (len == 0) {
      ++i;
      continue;
    }
    encode_raw(raw_start, i);
    out.push_back(id);
    i += len;
    raw_start = i;
  }
  encode_raw(raw_start, text.size());

  if (add_special && m.v.add_eos && m.v.eos_id >= 0) out.push_back(m.v.eos_id);
  return out;
}

std::string Tokenizer::token_bytes(int32_t id) const {
  if (id < 0 || id >= n_vocab()) fail("token id {} is out of range [0, {})", id, n_vocab());
  return impl_->bytes[id];
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special) const {
  const Impl& m = *impl_;
  std::string out;
  for (size_t k = 0; k < ids.size(); ++k) {
    const int32_t id = ids[k];
    if (id < 0 || id >= n_vocab()) fail("decode: token id {} at position {} is out of range [0, {})", id, k, n_vocab());
    if (skip_special && m.type(id) == TokenType::Control) continue;
    out += m.bytes[id];
  }
  // SPM with a dummy prefix: encode added one space at the start, decode removes it.
  if (m.spm && m.v.add_space_prefix && !out.empty() && out[0] == ' ' && !ids.empty() &&
      m.type(ids[0]) != TokenType::Control)
    out.erase(0, 1);
  // HF Strip / Metaspace decoders drop the prefix space the normalizer added.
  if (m.hf)
    for (int k = 0; k < m.v.hf.decode_strip_start && !out.empty() && out[0] == ' '; ++k) out.erase(0, 1);
  return out;
}

int32_t Tokenizer::n_vocab() const { return static_cast<int32_t>(impl_->v.tokens.size()); }
const VocabData& Tokenizer::vocab() const { return impl_->v; }
bool Tokenizer::is_eog(int32_t id) const { return id >= 0 && id < n_vocab() && impl_->eog[id]; }

int32_t Tokenizer::find(std::string_view token_text) const {
  return impl_->index.find(token_text);
}

std::string Utf8Stream::push(std::string_view bytes) {
  pending_.append(bytes);
  // Hold back a trailing lead byte (plus its continuations) whose sequence is incomplete.
  // Anything else, including ill-formed bytes, is released as is.
  size_t keep = 0;
  const size_t n = pending_.size();
  for (size_t back = 1; back <= std::min<size_t>(3, n); ++back) {
    const auto c = static_cast<uint8_t>(pending_[n - back]);
    if ((c & 0xC0) == 0x80) continue;  // continuation: look further back
    const int need = utf8::seq_len(c);
    if (need > static_cast<int>(back)) keep = back;
    break;
  }
  std::string out = pending_.substr(0, n - keep);
  pending_.erase(0, n - keep);
  return out;
}

std::string Utf8Stream::flush() {
  std::string out;
  out.swap(pending_);
  return out;
}

}  // namespace kvz

// VocabData from a Hugging Face folder: tokenizer.json (huggingface/tokenizers
// serialization: tokenizers/src/{normalizers,pre_tokenizers,models/bpe,decoders}/*.rs),
// tokenizer_config.json and generation_config.json. Only the BPE model is accepted, with
// the normalizers and pre-tokenizers listed in HfPipeline; anything else is a kvz::Error
// naming the component, never a silent approximation.
#include <sys/stat.h>

#include <cctype>
#include <fstream>
#include <optional>

#include "core/error.h"
#include "io/json_file.h"
#include "tokenizer/hf_vocab.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/tokenizer.h"

namespace kvz {

namespace {

bool exists(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// A Split/Replace pattern: {"String": s} (literal) or {"Regex": r}. Literals become an
// escaped regex so both go through the same engine.
std::string pattern_regex(const JsonReader& p) {
  if (auto re = p.object().find("Regex")) return re->str();
  if (auto lit = p.find("String")) {
    std::string out;
    for (char c : lit->str()) {
      if (std::string_view("\\^$.|?*+()[]{}-/").find(c) != std::string_view::npos) out.push_back('\\');
      out.push_back(c);
    }
    return out;
  }
  p.fail_here("must be {\"String\": ..} or {\"Regex\": ..}");
}

// The items of a Sequence component's list (`key`); absent is empty.
std::vector<JsonReader> sequence(const JsonReader& n, const char* key) {
  auto list = n.find(key);
  return list ? list->elements() : std::vector<JsonReader>{};
}

void read_normalizer(const JsonReader& n, HfPipeline& hf) {
  const std::string type = n.object().get_str("type");
  if (type == "Sequence") {
    for (const auto& s : sequence(n, "normalizers")) read_normalizer(s, hf);
  } else if (type == "NFC") {
    hf.nfc = true;
  } else if (type == "Replace") {
    const JsonReader p = n.at("pattern").object();
    if (!p.has("String")) p.fail_here("is a regex pattern; the Replace normalizer supports {\"String\": ..} only");
    hf.replace.emplace_back(p.get_str("String"), n.get_str("content"));
  } else if (type == "Prepend") {
    hf.prepend = n.get_str("prepend");
  } else {
    fail("{}: normalizer '{}' is not supported (supported: Sequence, NFC, Replace, Prepend)", n.where(), type);
  }
}

void read_pre_tokenizer(const JsonReader& p, HfPipeline& hf) {
  const std::string type = p.object().get_str("type");
  if (type == "Sequence") {
    for (const auto& s : sequence(p, "pretokenizers")) read_pre_tokenizer(s, hf);
  } else if (type == "ByteLevel") {
    if (p.get_bool("add_prefix_space", false)) p.fail_here("is ByteLevel with add_prefix_space=true, which is not supported");
    if (p.get_bool("use_regex", true)) hf.split_patterns.push_back(PreTokenizer::gpt2_pattern());
    hf.byte_level = true;
  } else if (type == "Split") {
    const std::string behavior = p.get_str("behavior", "");
    const bool invert = p.get_bool("invert", false);
    if (behavior != "Isolated" || invert)
      p.fail_here(fmt::format("is a Split pre-tokenizer with behavior '{}' invert {}, which is not supported "
                              "(Isolated only)", behavior, invert));
    hf.split_patterns.push_back(pattern_regex(p.at("pattern")));
  } else if (type == "Digits") {
    hf.split_patterns.push_back(p.get_bool("individual_digits", false) ? R"(\p{N})" : R"(\p{N}+)");
  } else if (type == "Metaspace") {
    hf.metaspace = p.get_str("replacement", "\xE2\x96\x81");
    hf.metaspace_prepend = p.get_str("prepend_scheme", p.get_bool("add_prefix_space", true) ? "always" : "never");
    hf.metaspace_split = p.get_bool("split", true);
    if (hf.metaspace_split) p.fail_here("is Metaspace with split=true, which is not supported");
  } else {
    fail("{}: pre-tokenizer '{}' is not supported (supported: Sequence, ByteLevel, Split, Digits, Metaspace)",
         p.where(), type);
  }
}

void read_decoder(const JsonReader& d, HfPipeline& hf) {
  const std::string type = d.object().get_str("type");
  if (type == "Sequence") {
    for (const auto& s : sequence(d, "decoders")) read_decoder(s, hf);
  } else if (type == "Strip") {
    hf.decode_strip_start = static_cast<int>(d.get_int("start", 0, 1 << 20, 0));
  } else if (type == "Metaspace") {
    if (d.get_str("prepend_scheme", "always") != "never") hf.decode_strip_start = 1;
  }
  // ByteLevel, ByteFallback, Fuse, Replace: token_bytes() already renders tokens that way.
}

// A token given as "text" or {"content": "text", ...} in tokenizer_config.json; null is none.
std::string token_text(const JsonReader& j) {
  if (j.is_null()) return "";
  if (j.is_string()) return j.str();
  if (j.is_object()) return j.get_str("content");
  j.type_error("a string or an object with \"content\"");
}

}  // namespace

VocabData vocab_from_hf(const std::string& dir) {
  const std::string tpath = dir + "/tokenizer.json";
  if (!exists(tpath)) fail("{}: no tokenizer.json (kvzip reads HF fast-tokenizer files only)", dir);
  HfTokenizerFiles files{JsonReader::open(tpath), std::nullopt, std::nullopt, ""};
  if (exists(dir + "/tokenizer_config.json")) files.config = JsonReader::open(dir + "/tokenizer_config.json");
  if (exists(dir + "/generation_config.json")) files.generation = JsonReader::open(dir + "/generation_config.json");
  if (exists(dir + "/chat_template.jinja")) {
    std::ifstream in(dir + "/chat_template.jinja", std::ios::binary);
    files.chat_template.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  return vocab_from_hf(files);
}

VocabData vocab_from_hf(const HfTokenizerFiles& files) {
  const JsonReader& t = files.tokenizer;
  const std::string& tpath = t.file();
  const JsonReader m = t.object().at("model").object();
  const std::string mtype = m.get_str("type", "");
  if (mtype != "BPE") fail("{}: tokenizer model '{}' is not supported (BPE only)", tpath, mtype);
  if (m.get_number("dropout", 0.0) != 0.0) m.at("dropout").fail_here("is set: BPE dropout is not supported");
  if (!m.get_str("continuing_subword_prefix", "").empty())
    m.at("continuing_subword_prefix").fail_here("is set: BPE continuing_subword_prefix is not supported");

  VocabData v;
  v.model = "hf-bpe";
  v.pre = "tokenizer.json";
  HfPipeline& hf = v.hf;
  hf.byte_fallback = m.get_bool("byte_fallback", false);
  hf.ignore_merges = m.get_bool("ignore_merges", false);
  hf.fuse_unk = m.get_bool("fuse_unk", false);

  // Vocabulary: token -> id, then the added tokens (which may extend it).
  constexpr int64_t kMaxVocab = 1 << 24;
  std::vector<std::pair<std::string, int64_t>> entries;
  for (const auto& [tok, id] : m.at("vocab").members()) entries.emplace_back(tok, id.integer(0, kMaxVocab - 1));
  struct Added {
    std::string text;
    int64_t id;
    bool special;
  };
  std::vector<Added> added;
  if (auto list = t.find("added_tokens"))
    for (const JsonReader& a : list->elements())
      added.push_back({a.object().get_str("content"), a.get_int("id", 0, kMaxVocab - 1), a.get_bool("special", false)});
  int64_t n = 0;
  for (const auto& [tok, id] : entries) n = std::max(n, id + 1);
  for (const auto& a : added) n = std::max(n, a.id + 1);
  // Real vocabularies are dense; one id near kMaxVocab in a tiny file would make every
  // per-id table below that large (gigabytes, seconds per load; found by fuzz/tokenizer).
  const int64_t named = static_cast<int64_t>(entries.size() + added.size());
  if (n > 2 * named + 1024)
    fail("{}: the largest token id is {} but the file names only {} tokens (the id space must be dense)", tpath,
         n - 1, named);
  v.tokens.assign(n, "");
  v.types.assign(n, TokenType::Unused);
  std::vector<char> have(n, 0);
  for (const auto& [tok, id] : entries) {
    if (have[id]) fail("{}: id {} is used by two vocabulary entries", tpath, id);
    v.tokens[id] = tok;
    v.types[id] = TokenType::Normal;
    have[id] = 1;
  }
  for (const auto& a : added) {
    if (have[a.id] && v.tokens[a.id] != a.text)
      fail("{}: added token '{}' reuses id {} of '{}'", tpath, a.text, a.id, v.tokens[a.id]);
    v.tokens[a.id] = a.text;
    v.types[a.id] = a.special ? TokenType::Control : TokenType::UserDefined;
    have[a.id] = 1;
  }
  for (int64_t id = 0; id < n; ++id)
    if (!have[id]) v.tokens[id] = fmt::format("[PAD{}]", id);  // holes in the id space
  if (hf.byte_fallback)  // <0xHH> tokens are bytes (decoded as such by the ByteFallback decoder)
    for (int64_t id = 0; id < n; ++id) {
      const std::string& s = v.tokens[id];
      if (v.types[id] == TokenType::Normal && s.size() == 6 && s.compare(0, 3, "<0x") == 0 && s[5] == '>' &&
          std::isxdigit(static_cast<unsigned char>(s[3])) && std::isxdigit(static_cast<unsigned char>(s[4])))
        v.types[id] = TokenType::Byte;
    }

  // Merges: "a b" strings (tokenizers < 0.20) or [a, b] pairs.
  if (auto merges = m.find("merges"))
    for (const JsonReader& mg : merges->elements()) {
      if (mg.is_string()) {
        const std::string s = mg.str();
        const size_t sp = s.find(' ', 1);
        if (sp == std::string::npos || sp + 1 >= s.size())
          mg.fail_here(fmt::format("= '{}' is not two space-separated tokens", s));
        hf.merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
      } else if (mg.is_array() && mg.size() == 2 && mg[0].is_string() && mg[1].is_string()) {
        hf.merges.emplace_back(mg[0].str(), mg[1].str());
      } else {
        mg.type_error("a merge: neither \"a b\" nor [\"a\", \"b\"]");
      }
    }
  if (auto unk_field = m.find("unk_token")) {
    const std::string unk = unk_field->str();
    for (int64_t id = 0; id < n; ++id)
      if (v.tokens[id] == unk) v.unk_id = static_cast<int32_t>(id);
    if (v.unk_id < 0) unk_field->fail_here(fmt::format("= '{}' is not in the vocabulary", unk));
  }

  if (auto c = t.find("normalizer")) read_normalizer(*c, hf);
  if (auto c = t.find("pre_tokenizer")) read_pre_tokenizer(*c, hf);
  if (auto c = t.find("decoder")) read_decoder(*c, hf);

  auto find_id = [&](const std::string& text) -> int32_t {
    if (text.empty()) return -1;
    for (int64_t id = 0; id < n; ++id)
      if (v.tokens[id] == text) return static_cast<int32_t>(id);
    return -1;
  };
  // BOS/EOS as the post-processor adds them (encode(add_special_tokens=True)).
  if (auto pp = t.find("post_processor"); pp && pp->object().get_str("type", "") == "TemplateProcessing") {
    if (auto single_field = pp->find("single")) {
      const std::vector<JsonReader> single = single_field->elements();
      auto special_id = [&](const JsonReader& item) -> int32_t {
        auto st = item.object().find("SpecialToken");
        return st ? find_id(st->object().get_str("id", "")) : -1;
      };
      if (!single.empty() && special_id(single.front()) >= 0) {
        v.add_bos = true;
        v.bos_id = special_id(single.front());
      }
      if (single.size() > 1 && special_id(single.back()) >= 0) {
        v.add_eos = true;
        v.eos_id = special_id(single.back());
      }
    }
  }

  if (files.config) {
    const JsonReader& c = *files.config;
    c.object();
    if (auto bos = c.find("bos_token"); bos && v.bos_id < 0) v.bos_id = find_id(token_text(*bos));
    if (auto eos = c.find("eos_token")) {
      const int32_t id = find_id(token_text(*eos));
      if (id >= 0 && !v.add_eos) v.eos_id = id;
    }
    // Tokenizer classes without a post-processor (GemmaTokenizer, LlamaTokenizer) add BOS
    // from this flag.
    if (c.get_bool("add_bos_token", false) && v.bos_id >= 0) v.add_bos = true;
    if (auto pad = c.find("pad_token")) v.pad_id = find_id(token_text(*pad));
    if (auto ct = c.find("chat_template")) {
      if (ct->is_string()) {
        v.chat_template = ct->str();
      } else if (ct->is_array()) {  // [{name, template}, ...]: the default one
        for (const JsonReader& e : ct->elements())
          if (e.object().get_str("name") == "default") v.chat_template = e.get_str("template");
      } else {
        ct->type_error("a string or a list of {\"name\", \"template\"} objects");
      }
    }
  }
  if (v.chat_template.empty()) v.chat_template = files.chat_template;
  // generation_config.json's eos_token_id (an id or a list) ends generation too; an id
  // past the tokenizer's tokens is checked against the embedding rows at load (model/validate).
  if (files.generation) {
    const JsonReader& g = *files.generation;
    if (auto e = g.object().find("eos_token_id")) {
      const std::vector<JsonReader> ids = e->is_array() ? e->elements() : std::vector<JsonReader>{*e};
      for (const JsonReader& id : ids) v.eog_ids.push_back(static_cast<int32_t>(id.integer(0, kMaxVocab - 1)));
    }
  }
  add_default_eog(v);
  return v;
}

}  // namespace kvz

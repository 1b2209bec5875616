// VocabData from a Hugging Face folder: tokenizer.json (huggingface/tokenizers
// serialization: tokenizers/src/{normalizers,pre_tokenizers,models/bpe,decoders}/*.rs),
// tokenizer_config.json and generation_config.json. Only the BPE model is accepted, with
// the normalizers and pre-tokenizers listed in HfPipeline; anything else is a kvz::Error
// naming the component, never a silent approximation.
#include <sys/stat.h>

#include <cctype>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/json_file.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/tokenizer.h"

namespace kvz {

using json = nlohmann::json;

namespace {

bool exists(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string str_at(const json& j, const char* key, const std::string& where) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_string()) fail("{}: expected a string '{}'", where, key);
  return it->get<std::string>();
}

// A Split/Replace pattern: {"String": s} (literal) or {"Regex": r}. Literals become an
// escaped regex so both go through the same engine.
std::string pattern_regex(const json& p, const std::string& where) {
  if (p.contains("Regex") && p["Regex"].is_string()) return p["Regex"].get<std::string>();
  if (p.contains("String") && p["String"].is_string()) {
    std::string out;
    for (char c : p["String"].get<std::string>()) {
      if (std::string_view("\\^$.|?*+()[]{}-/").find(c) != std::string_view::npos) out.push_back('\\');
      out.push_back(c);
    }
    return out;
  }
  fail("{}: pattern must be {{\"String\": ..}} or {{\"Regex\": ..}}", where);
}

void read_normalizer(const json& n, HfPipeline& hf, const std::string& where) {
  if (n.is_null()) return;
  const std::string type = str_at(n, "type", where);
  if (type == "Sequence") {
    for (const auto& s : n.value("normalizers", json::array())) read_normalizer(s, hf, where);
  } else if (type == "NFC") {
    hf.nfc = true;
  } else if (type == "Replace") {
    const auto& p = n["pattern"];
    if (!p.contains("String")) fail("{}: Replace normalizer with a regex pattern is not supported", where);
    hf.replace.emplace_back(p["String"].get<std::string>(), str_at(n, "content", where));
  } else if (type == "Prepend") {
    hf.prepend = str_at(n, "prepend", where);
  } else {
    fail("{}: normalizer '{}' is not supported (supported: Sequence, NFC, Replace, Prepend)", where, type);
  }
}

void read_pre_tokenizer(const json& p, HfPipeline& hf, const std::string& where) {
  if (p.is_null()) return;
  const std::string type = str_at(p, "type", where);
  if (type == "Sequence") {
    for (const auto& s : p.value("pretokenizers", json::array())) read_pre_tokenizer(s, hf, where);
  } else if (type == "ByteLevel") {
    if (p.value("add_prefix_space", false)) fail("{}: ByteLevel add_prefix_space=true is not supported", where);
    if (p.value("use_regex", true)) hf.split_patterns.push_back(PreTokenizer::gpt2_pattern());
    hf.byte_level = true;
  } else if (type == "Split") {
    if (p.value("behavior", "") != "Isolated" || p.value("invert", false))
      fail("{}: Split pre-tokenizer with behavior '{}' invert {} is not supported (Isolated only)", where,
           p.value("behavior", ""), p.value("invert", false));
    hf.split_patterns.push_back(pattern_regex(p["pattern"], where));
  } else if (type == "Digits") {
    hf.split_patterns.push_back(p.value("individual_digits", false) ? R"(\p{N})" : R"(\p{N}+)");
  } else if (type == "Metaspace") {
    hf.metaspace = p.value("replacement", "\xE2\x96\x81");
    hf.metaspace_prepend = p.value("prepend_scheme", p.value("add_prefix_space", true) ? "always" : "never");
    hf.metaspace_split = p.value("split", true);
    if (hf.metaspace_split) fail("{}: Metaspace with split=true is not supported", where);
  } else {
    fail("{}: pre-tokenizer '{}' is not supported (supported: Sequence, ByteLevel, Split, Digits, Metaspace)",
         where, type);
  }
}

void read_decoder(const json& d, HfPipeline& hf, const std::string& where) {
  if (d.is_null()) return;
  const std::string type = str_at(d, "type", where);
  if (type == "Sequence") {
    for (const auto& s : d.value("decoders", json::array())) read_decoder(s, hf, where);
  } else if (type == "Strip") {
    hf.decode_strip_start = d.value("start", 0);
  } else if (type == "Metaspace") {
    if (d.value("prepend_scheme", "always") != "never") hf.decode_strip_start = 1;
  }
  // ByteLevel, ByteFallback, Fuse, Replace: token_bytes() already renders tokens that way.
}

// A token given as "text" or {"content": "text", ...} in tokenizer_config.json.
std::string token_text(const json& j) {
  if (j.is_string()) return j.get<std::string>();
  if (j.is_object() && j.contains("content") && j["content"].is_string()) return j["content"].get<std::string>();
  return "";
}

}  // namespace

VocabData vocab_from_hf(const std::string& dir) {
  const std::string tpath = dir + "/tokenizer.json";
  if (!exists(tpath)) fail("{}: no tokenizer.json (kvzip reads HF fast-tokenizer files only)", dir);
  const json t = read_json(tpath);
  if (!t.is_object() || !t.contains("model") || !t["model"].is_object()) fail("{}: no 'model' object", tpath);
  const json& m = t["model"];
  const std::string mtype = m.value("type", "");
  if (mtype != "BPE") fail("{}: tokenizer model '{}' is not supported (BPE only)", tpath, mtype);
  if (!m.value("dropout", json()).is_null() && m["dropout"].get<double>() != 0.0)
    fail("{}: BPE dropout is not supported", tpath);
  if (!m.value("continuing_subword_prefix", json()).is_null() && !m["continuing_subword_prefix"].get<std::string>().empty())
    fail("{}: BPE continuing_subword_prefix is not supported", tpath);

  VocabData v;
  v.model = "hf-bpe";
  v.pre = "tokenizer.json";
  HfPipeline& hf = v.hf;
  hf.byte_fallback = m.value("byte_fallback", false);
  hf.ignore_merges = m.value("ignore_merges", false);
  hf.fuse_unk = m.value("fuse_unk", false);

  // Vocabulary: token -> id, then the added tokens (which may extend it).
  if (!m.contains("vocab") || !m["vocab"].is_object()) fail("{}: model.vocab is not an object", tpath);
  std::vector<std::pair<std::string, int64_t>> entries;
  for (const auto& [tok, id] : m["vocab"].items()) {
    if (!id.is_number_integer()) fail("{}: vocab entry '{}' has a non-integer id", tpath, tok);
    entries.emplace_back(tok, id.get<int64_t>());
  }
  struct Added {
    std::string text;
    int64_t id;
    bool special;
  };
  std::vector<Added> added;
  for (const auto& a : t.value("added_tokens", json::array())) {
    if (!a.is_object() || !a.contains("id") || !a["id"].is_number_integer() || !a.contains("content"))
      fail("{}: malformed added_tokens entry {}", tpath, a.dump());
    added.push_back({a["content"].get<std::string>(), a["id"].get<int64_t>(), a.value("special", false)});
  }
  int64_t n = 0;
  for (const auto& [tok, id] : entries) n = std::max(n, id + 1);
  for (const auto& a : added) n = std::max(n, a.id + 1);
  constexpr int64_t kMaxVocab = 1 << 24;
  for (const auto& [tok, id] : entries)
    if (id < 0 || id >= kMaxVocab) fail("{}: token '{}' has id {} outside [0, {})", tpath, tok, id, kMaxVocab);
  for (const auto& a : added)
    if (a.id < 0 || a.id >= kMaxVocab) fail("{}: added token '{}' has id {} outside [0, {})", tpath, a.text, a.id, kMaxVocab);
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
  for (const auto& mg : m.value("merges", json::array())) {
    if (mg.is_string()) {
      const std::string s = mg.get<std::string>();
      const size_t sp = s.find(' ', 1);
      if (sp == std::string::npos || sp + 1 >= s.size()) fail("{}: merge '{}' is not two space-separated tokens", tpath, s);
      hf.merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
    } else if (mg.is_array() && mg.size() == 2 && mg[0].is_string() && mg[1].is_string()) {
      hf.merges.emplace_back(mg[0].get<std::string>(), mg[1].get<std::string>());
    } else {
      fail("{}: merge {} is neither \"a b\" nor [\"a\", \"b\"]", tpath, mg.dump());
    }
  }
  if (m.contains("unk_token") && m["unk_token"].is_string()) {
    const std::string unk = m["unk_token"].get<std::string>();
    for (int64_t id = 0; id < n; ++id)
      if (v.tokens[id] == unk) v.unk_id = static_cast<int32_t>(id);
    if (v.unk_id < 0) fail("{}: unk_token '{}' is not in the vocabulary", tpath, unk);
  }

  read_normalizer(t.value("normalizer", json()), hf, tpath + ": normalizer");
  read_pre_tokenizer(t.value("pre_tokenizer", json()), hf, tpath + ": pre_tokenizer");
  read_decoder(t.value("decoder", json()), hf, tpath + ": decoder");

  auto find_id = [&](const std::string& text) -> int32_t {
    if (text.empty()) return -1;
    for (int64_t id = 0; id < n; ++id)
      if (v.tokens[id] == text) return static_cast<int32_t>(id);
    return -1;
  };
  // BOS/EOS as the post-processor adds them (encode(add_special_tokens=True)).
  const json pp = t.value("post_processor", json());
  if (pp.is_object() && pp.value("type", "") == "TemplateProcessing" && pp.contains("single")) {
    const json& single = pp["single"];
    auto special_id = [&](const json& item) -> int32_t {
      if (!item.contains("SpecialToken")) return -1;
      return find_id(item["SpecialToken"].value("id", ""));
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

  const std::string cpath = dir + "/tokenizer_config.json";
  if (exists(cpath)) {
    const json c = read_json(cpath);
    if (c.contains("bos_token") && v.bos_id < 0) v.bos_id = find_id(token_text(c["bos_token"]));
    if (c.contains("eos_token")) {
      const int32_t id = find_id(token_text(c["eos_token"]));
      if (id >= 0 && !v.add_eos) v.eos_id = id;
    }
    // Tokenizer classes without a post-processor (GemmaTokenizer, LlamaTokenizer) add BOS
    // from this flag.
    if (c.value("add_bos_token", false) && v.bos_id >= 0) v.add_bos = true;
    if (c.contains("pad_token")) v.pad_id = find_id(token_text(c["pad_token"]));
    if (c.contains("chat_template")) {
      const json& ct = c["chat_template"];
      if (ct.is_string()) {
        v.chat_template = ct.get<std::string>();
      } else if (ct.is_array()) {  // [{name, template}, ...]: the default one
        for (const auto& e : ct)
          if (e.value("name", "") == "default") v.chat_template = e.value("template", "");
      }
    }
  }
  if (v.chat_template.empty() && exists(dir + "/chat_template.jinja")) {
    std::ifstream in(dir + "/chat_template.jinja", std::ios::binary);
    v.chat_template.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  // generation_config.json's eos_token_id (an id or a list) ends generation too.
  const std::string gpath = dir + "/generation_config.json";
  if (exists(gpath)) {
    const json g = read_json(gpath);
    const json e = g.value("eos_token_id", json());
    for (const auto& id : e.is_array() ? e : json::array({e}))
      if (id.is_number_integer() && id.get<int64_t>() >= 0 && id.get<int64_t>() < n)
        v.eog_ids.push_back(static_cast<int32_t>(id.get<int64_t>()));
  }
  add_default_eog(v);
  return v;
}

}  // namespace kvz

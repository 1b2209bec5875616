// Structure-aware mutation for the JSON targets (config, tokenizer, request). Byte-level
// mutation rarely turns a valid document into another valid one of a different shape, and
// the bugs these readers had were type confusions ("model_type": 5), so this mutator parses
// the input and edits the document: a value becomes another type or a boundary value
// (null, 0, -1, 2^31, 2^63 - 1, 2^64 - 1, 1e308, 1e999, "NaN", "", [], {}, ...), a member
// is removed, duplicated or added under a key from the target's dictionary, a subtree is
// copied over another, a string's bytes are mutated by libFuzzer. Input that does not parse
// (and one mutation in eight of input that does) goes to libFuzzer's byte mutator, so the
// parser's own error paths stay covered.
//
// KVZ_FUZZ_JSON_MUTATOR() in a target defines LLVMFuzzerInitialize (which loads the
// quoted entries of the -dict= file as keys and strings) and LLVMFuzzerCustomMutator.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <string_view>
#include <vector>

extern "C" size_t LLVMFuzzerMutate(uint8_t* data, size_t size, size_t max_size);

namespace kvz::fuzz {

using nlohmann::json;

// Words of the target's dictionary (fuzz/dict/*.dict, libFuzzer's format: name="value"
// with \" \\ and \xNN escapes), without surrounding JSON quotes.
inline std::vector<std::string>& dict_words() {
  static std::vector<std::string> words;
  return words;
}

inline void load_dict(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    const size_t q = line.find('"');
    if (line.empty() || line[0] == '#' || q == std::string::npos || line.back() != '"' || q + 1 >= line.size()) continue;
    std::string w;
    for (size_t i = q + 1; i + 1 < line.size(); ++i) {
      if (line[i] != '\\' || i + 2 >= line.size()) {
        w.push_back(line[i]);
      } else if (line[i + 1] == 'x' && i + 3 < line.size()) {
        w.push_back(static_cast<char>(std::stoi(line.substr(i + 2, 2), nullptr, 16)));
        i += 3;
      } else {
        w.push_back(line[++i]);
      }
    }
    if (w.size() >= 2 && w.front() == '"' && w.back() == '"') w = w.substr(1, w.size() - 2);
    if (!w.empty()) dict_words().push_back(w);
  }
}

inline void init_from_args(int* argc, char*** argv) {
  for (int i = 1; i < *argc; ++i) {
    const std::string_view a = (*argv)[i];
    if (a.rfind("-dict=", 0) == 0) load_dict(std::string(a.substr(6)));
  }
}

// Placeholders for numbers a dump cannot write (nlohmann writes inf as null): replaced in the
// text after dumping, so the reader sees an overflowing literal.
constexpr std::pair<const char*, const char*> kLiterals[] = {
    {"\"@@inf@@\"", "1e999"},
    {"\"@@-inf@@\"", "-1e999"},
    {"\"@@big@@\"", "123456789012345678901234567890"},
    {"\"@@-big@@\"", "-99999999999999999999"},
};

inline const std::vector<json>& boundary_values() {
  static const std::vector<json> v = [] {
    std::vector<json> b = {nullptr, true, false, 0, 1, -1, 2, 3, 7, 8, 255, 256, 65535, 65536,
                           int64_t{1} << 24, (int64_t{1} << 24) - 1, int64_t{std::numeric_limits<int32_t>::max()},
                           int64_t{std::numeric_limits<int32_t>::max()} + 1,
                           int64_t{std::numeric_limits<int32_t>::min()},
                           int64_t{std::numeric_limits<int32_t>::min()} - 1, std::numeric_limits<int64_t>::max(),
                           std::numeric_limits<int64_t>::min(), std::numeric_limits<uint64_t>::max(),
                           uint64_t{1} << 63, 0.0, -0.0, 0.5, -0.5, 1.5, 1e-45, 1e-320, 1e-6, 1e300, -1e300,
                           std::numeric_limits<double>::max(), 9.223372036854775807e18, 1.8446744073709552e19,
                           "", " ", "NaN", "nan", "inf", "-inf", "Infinity", "1e999", "-1", "0", "true", "null",
                           std::string(257, 'a'), "\xc3\xa9", "\xe2\x96\x81", "<|im_start|>", "{{", "{%",
                           json::array(), json::object(), json::array({1, 2}), json::array({"a", "b"}),
                           json::array({nullptr}), json::object({{"a", 1}}), json::object({{"type", "BPE"}})};
    for (const auto& [ph, lit] : kLiterals) b.push_back(std::string(ph).substr(1, std::strlen(ph) - 2));
    return b;
  }();
  return v;
}

// Every value of the document, parents before children.
inline void collect(json& j, std::vector<json*>& out) {
  out.push_back(&j);
  if (j.is_object()) {
    for (auto& el : j.items()) collect(el.value(), out);
  } else if (j.is_array()) {
    for (auto& el : j) collect(el, out);
  }
}

inline std::string random_key(std::mt19937_64& rng, const std::vector<json*>& nodes) {
  const auto& words = dict_words();
  if (!words.empty() && rng() % 4 != 0) return words[rng() % words.size()];
  std::vector<std::string> keys;  // keys used elsewhere in the document
  for (const json* n : nodes)
    if (n->is_object())
      for (auto& el : n->items()) keys.push_back(el.key());
  return keys.empty() ? std::string("x") : keys[rng() % keys.size()];
}

// The same value as another type, where there is an obvious one.
inline json retype(const json& v, std::mt19937_64& rng) {
  switch (v.type()) {
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
      if (rng() % 2) return v.dump();
      return v.get<double>() + 0.5;
    case json::value_t::number_float:
      if (rng() % 2) return v.dump();
      return static_cast<int64_t>(v.get<double>() >= -9e18 && v.get<double>() <= 9e18 ? v.get<double>() : 0);
    case json::value_t::string: {
      const auto& s = v.get_ref<const std::string&>();
      const json n = json::parse(s, nullptr, false);
      if (!n.is_discarded() && rng() % 2) return n;
      return rng() % 2 ? json(json::array({v})) : json(json::object({{"content", v}}));
    }
    case json::value_t::boolean: return rng() % 2 ? json(v.get<bool>() ? 1 : 0) : json(v.get<bool>() ? "true" : "false");
    case json::value_t::object: {
      json a = json::array();
      for (auto& el : v.items()) a.push_back(el.value());
      return a;
    }
    case json::value_t::array: {
      json o = json::object();
      for (size_t i = 0; i < v.size(); ++i) o[std::to_string(i)] = v[i];
      return o;
    }
    default: return json::object();
  }
}

inline json nudge_number(const json& v, std::mt19937_64& rng) {
  if (v.is_number_integer() && !v.is_number_unsigned()) {
    const int64_t x = v.get<int64_t>();
    switch (rng() % 5) {
      case 0: return x == std::numeric_limits<int64_t>::max() ? x : x + 1;
      case 1: return x == std::numeric_limits<int64_t>::min() ? x : x - 1;
      case 2: return x == std::numeric_limits<int64_t>::min() ? x : -x;
      case 3: return x > (int64_t{1} << 40) || x < -(int64_t{1} << 40) ? x : x * 4096;
      default: return 0;
    }
  }
  const double x = v.get<double>();
  switch (rng() % 4) {
    case 0: return -x;
    case 1: return x * 1e10;
    case 2: return x / 1e10;
    default: return x + 1;
  }
}

inline void mutate_string(json& v) {
  std::string s = v.get<std::string>();
  if (s.empty()) s = "a";
  const size_t n0 = s.size(), max = n0 * 2 + 16;
  s.resize(max);
  s.resize(LLVMFuzzerMutate(reinterpret_cast<uint8_t*>(s.data()), n0, max));
  v = s;
}

// One edit of the document at a random node.
inline void mutate_once(json& doc, std::mt19937_64& rng) {
  std::vector<json*> nodes;
  collect(doc, nodes);
  json& v = *nodes[rng() % nodes.size()];
  const auto& bv = boundary_values();
  switch (rng() % 10) {
    case 0:
    case 1: v = bv[rng() % bv.size()]; break;
    case 2: v = retype(v, rng); break;
    case 3: v = rng() % 2 || v.empty() || !v.is_structured() ? json(json::array({v})) : json(*v.begin()); break;
    case 4:  // remove or duplicate a member / element
      if (v.is_object() && !v.empty()) {
        auto it = v.begin();
        std::advance(it, rng() % v.size());
        if (rng() % 2) v.erase(it);
        else v[it.key() + (rng() % 2 ? "_" : "")] = *it;
      } else if (v.is_array() && !v.empty()) {
        const size_t i = rng() % v.size();
        if (rng() % 2) {
          v.erase(i);
        } else {
          const json copy = v[i];  // push_back may reallocate under a reference to v[i]
          v.push_back(copy);
        }
      } else {
        v = bv[rng() % bv.size()];
      }
      break;
    case 5:  // add a member under a dictionary key
      if (v.is_object()) v[random_key(rng, nodes)] = bv[rng() % bv.size()];
      else if (v.is_array()) v.push_back(bv[rng() % bv.size()]);
      else v = json::object({{random_key(rng, nodes), v}});
      break;
    case 6:
      if (v.is_number()) v = nudge_number(v, rng);
      else if (v.is_string()) mutate_string(v);
      else v = retype(v, rng);
      break;
    case 7:
      if (v.is_string()) {
        const auto& words = dict_words();
        v = words.empty() || rng() % 3 == 0 ? json(std::string()) : json(words[rng() % words.size()]);
      } else {
        v = bv[rng() % bv.size()];
      }
      break;
    default: {  // copy another subtree over this one (the copy, not a reference into it)
      const json src = *nodes[rng() % nodes.size()];
      v = src;
    }
  }
}

inline size_t mutate_json(uint8_t* data, size_t size, size_t max_size, unsigned int seed) {
  std::mt19937_64 rng(seed);
  if (rng() % 8 == 0) return LLVMFuzzerMutate(data, size, max_size);
  json doc = json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return LLVMFuzzerMutate(data, size, max_size);
  const int rounds = 1 + static_cast<int>(rng() % 3);
  for (int i = 0; i < rounds; ++i) mutate_once(doc, rng);
  std::string out = doc.dump(rng() % 4 == 0 ? 2 : -1, ' ', false, json::error_handler_t::replace);
  for (const auto& [ph, lit] : kLiterals)
    for (size_t at = out.find(ph); at != std::string::npos; at = out.find(ph, at)) out.replace(at, std::strlen(ph), lit);
  if (out.size() > max_size) return LLVMFuzzerMutate(data, size, max_size);
  std::memcpy(data, out.data(), out.size());
  return out.size();
}

}  // namespace kvz::fuzz

#ifdef KVZ_FUZZ_REPLAY
#define KVZ_FUZZ_JSON_MUTATOR()
#else
#define KVZ_FUZZ_JSON_MUTATOR()                                                                       \
  extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {                                     \
    kvz::fuzz::init_from_args(argc, argv);                                                           \
    return 0;                                                                                        \
  }                                                                                                  \
  extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t max_size, unsigned int seed) { \
    return kvz::fuzz::mutate_json(data, size, max_size, seed);                                       \
  }
#endif

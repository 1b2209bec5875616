// Regexes: the HF `tokenizers` pre-tokenizer patterns of each model family, as listed by
// llama.cpp src/llama-vocab.cpp (llama_vocab::impl::load, pre-type switch) and the models'
// tokenizer.json files. HF runs them with Oniguruma; we run them with PCRE2 (UTF | UCP),
// which has the inline (?i:...) group and lookahead they need. Differences handled here:
//  - `\s`: Oniguruma's Unicode \s is the White_Space property, which includes U+0085;
//    PCRE2's UCP \s does not, so every \s / \S is spelled as an explicit class below.
#include "tokenizer/pretokenize.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <map>

#include "core/error.h"
#include "tokenizer/unicode.h"

namespace kvz {

namespace {

// White_Space (Unicode PropList): TAB..CR, SPACE, NEL, NBSP, and the Z categories.
constexpr const char* kWs = R"(\t\n\x0B\f\r\x{85}\p{Z})";

std::string expand(std::string pat) {
  // Rewrites \s -> [WS], \S -> [^WS] and [^\s...] -> [^WS...]; the source patterns use
  // \s only in these three shapes.
  std::string out;
  for (size_t i = 0; i < pat.size(); ++i) {
    if (pat[i] == '\\' && i + 1 < pat.size() && (pat[i + 1] == 's' || pat[i + 1] == 'S')) {
      const bool in_class = !out.empty() && (out.back() == '^' || out.back() == '[');
      if (in_class) {
        if (pat[i + 1] != 's') fail("pre-tokenizer regex '{}': \\S inside a character class is not supported", pat);
        out += kWs;
      } else {
        out += pat[i + 1] == 's' ? "[" : "[^";
        out += kWs;
        out += "]";
      }
      ++i;
    } else {
      out.push_back(pat[i]);
    }
  }
  return out;
}

const char* kGpt2 = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
const char* kLlama3 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* kQwen2 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

const std::map<std::string, std::vector<std::string>>& registry() {
  static const std::map<std::string, std::vector<std::string>> r = {
      // GPT-2 ByteLevel(use_regex=true).
      {"default", {kGpt2}},
      {"gpt2", {kGpt2}},
      // SmolLM2 / StarCoder tokenizer.json: Sequence[Digits(individual_digits=true),
      // ByteLevel(use_regex=true)]: every \p{N} is isolated first, then the GPT-2 regex
      // runs on each remaining stretch.
      {"smollm", {R"(\p{N})", kGpt2}},
      {"starcoder", {R"(\p{N})", kGpt2}},
      {"refact", {R"(\p{N})", kGpt2}},
      // Llama 3: Split(regex, Isolated) then ByteLevel(use_regex=false).
      {"llama-bpe", {kLlama3}},
      {"llama3", {kLlama3}},
      // Qwen2/2.5/3 (ByteLevelBpe applies their NFC normalizer first).
      {"qwen2", {kQwen2}},
      {"deepseek-r1-qwen", {kQwen2}},
  };
  return r;
}

}  // namespace

struct PreTokenizer::Stage {
  pcre2_code* code = nullptr;
  ~Stage() { pcre2_code_free(code); }

  // Isolated split of one well-formed UTF-8 piece.
  void split(std::string_view s, pcre2_match_data* md, std::vector<std::string_view>& out) const {
    size_t pos = 0, gap = 0;
    while (pos < s.size()) {
      const int rc = pcre2_match(code, reinterpret_cast<PCRE2_SPTR>(s.data()), s.size(), pos,
                                 PCRE2_NO_UTF_CHECK, md, nullptr);
      if (rc == PCRE2_ERROR_NOMATCH) break;
      KVZ_ASSERT(rc > 0, "pcre2_match failed with code {}", rc);
      const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
      const size_t b = ov[0], e = ov[1];
      if (b > gap) out.push_back(s.substr(gap, b - gap));
      if (e > b) {
        out.push_back(s.substr(b, e - b));
        pos = gap = e;
      } else {
        // Empty match (none of our patterns produce one): step one code point.
        uint32_t cp;
        pos = b + std::max(1, utf8::decode(s, b, &cp));
      }
    }
    if (gap < s.size()) out.push_back(s.substr(gap));
  }
};

PreTokenizer::PreTokenizer(const std::string& name) {
  const auto& reg = registry();
  auto it = reg.find(name.empty() ? std::string("default") : name);
  if (it == reg.end()) {
    std::string names;
    for (const auto& [k, v] : reg) names += (names.empty() ? "" : ", ") + k;
    fail("tokenizer.ggml.pre '{}' is not supported (supported: {})", name, names);
  }
  for (const auto& pat : it->second) add_stage(pat);
}

PreTokenizer PreTokenizer::from_patterns(const std::vector<std::string>& patterns) {
  PreTokenizer p;
  for (const auto& pat : patterns) p.add_stage(pat);
  return p;
}

const char* PreTokenizer::gpt2_pattern() { return kGpt2; }

void PreTokenizer::add_stage(const std::string& pat) {
  {
    const std::string full = expand(pat);
    int err = 0;
    PCRE2_SIZE err_off = 0;
    auto st = std::make_unique<Stage>();
    st->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(full.c_str()), full.size(),
                             PCRE2_UTF | PCRE2_UCP, &err, &err_off, nullptr);
    if (!st->code) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(err, msg, sizeof(msg));
      fail("pre-tokenizer regex '{}' does not compile at {}: {}", full, err_off,
           reinterpret_cast<const char*>(msg));
    }
    pcre2_jit_compile(st->code, PCRE2_JIT_COMPLETE);  // falls back to the interpreter on failure
    patterns_.push_back(pat);
    stages_.push_back(std::move(st));
  }
}

PreTokenizer::~PreTokenizer() = default;
PreTokenizer::PreTokenizer(PreTokenizer&&) noexcept = default;
PreTokenizer& PreTokenizer::operator=(PreTokenizer&&) noexcept = default;

bool PreTokenizer::known(const std::string& name) {
  return registry().count(name.empty() ? std::string("default") : name) > 0;
}

void PreTokenizer::split(std::string_view text, std::vector<std::string_view>& out) const {
  struct FreeMd {
    void operator()(pcre2_match_data* md) const { pcre2_match_data_free(md); }
  };
  std::vector<std::unique_ptr<pcre2_match_data, FreeMd>> mds;
  mds.reserve(stages_.size());
  for (const auto& st : stages_) mds.emplace_back(pcre2_match_data_create_from_pattern(st->code, nullptr));

  std::vector<std::string_view> cur, next;
  auto run_stages = [&](std::string_view run) {
    cur.assign(1, run);
    for (size_t is = 0; is < stages_.size(); ++is) {
      next.clear();
      for (auto piece : cur) stages_[is]->split(piece, mds[is].get(), next);
      cur.swap(next);
    }
    out.insert(out.end(), cur.begin(), cur.end());
  };

  // Feed maximal well-formed runs to the regexes; ill-formed bytes become lone pieces.
  size_t run_start = 0, i = 0;
  while (i < text.size()) {
    uint32_t cp;
    const int n = utf8::decode(text, i, &cp);
    if (n > 0) {
      i += n;
      continue;
    }
    if (i > run_start) run_stages(text.substr(run_start, i - run_start));
    out.push_back(text.substr(i, 1));
    run_start = ++i;
  }
  if (i > run_start) run_stages(text.substr(run_start, i - run_start));
}

}  // namespace kvz

// Tokenizer tests: tiny in-memory vocabularies (no files) for merge order, special tokens,
// byte handling and streaming; and the SmolLM2 golden fixture (ids from HF `tokenizers`,
// tests/golden/gen/gen_tokenizer_fixture.py) when the model file is present.
#include <gtest/gtest.h>

#include <cctype>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "core/error.h"
#include "io/gguf.h"
#include "io/gguf_writer.h"
#include "tokenizer/models.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

namespace kvz {
namespace {

using Ids = std::vector<int32_t>;

// ---------------------------------------------------------------- tiny byte-level vocab
// Ids 0..255: single bytes in the GPT-2 alphabet; then merged tokens; then specials.
VocabData tiny_bpe(std::vector<std::string> merges, std::vector<std::string> extra,
                   std::vector<std::string> specials = {}) {
  VocabData v;
  v.model = "gpt2";
  v.pre = "gpt2";
  for (int b = 0; b < 256; ++b) {
    std::string s;
    utf8::append(s, byte_level::byte_to_cp()[b]);
    v.tokens.push_back(s);
  }
  for (auto& e : extra) v.tokens.push_back(e);
  v.types.assign(v.tokens.size(), TokenType::Normal);
  for (auto& s : specials) {
    v.tokens.push_back(s);
    v.types.push_back(TokenType::Control);
  }
  v.merges = std::move(merges);
  return v;
}

int32_t byte_id(char c) { return static_cast<unsigned char>(c); }

TEST(TokenizerBpe, MergeOrderFollowsRank) {
  // "abc": merge "b c" (rank 0) before "a b" (rank 1), so "a" + "bc", never "ab" + "c".
  Tokenizer t(tiny_bpe({"b c", "a b", "a bc"}, {"bc", "ab", "abc"}));
  const int32_t bc = t.find("bc"), abc = t.find("abc");
  EXPECT_EQ(t.encode("abc"), (Ids{abc}));
  EXPECT_EQ(t.encode("bca"), (Ids{bc, byte_id('a')}));
  // Without the third rule "abc" stops at a + bc.
  Tokenizer t2(tiny_bpe({"b c", "a b"}, {"bc", "ab"}));
  EXPECT_EQ(t2.encode("abc"), (Ids{byte_id('a'), t2.find("bc")}));
}

TEST(TokenizerBpe, EqualRankTiesGoLeftmost) {
  // "aaa" with only "a a": the leftmost pair merges first -> "aa" + "a".
  Tokenizer t(tiny_bpe({"a a"}, {"aa"}));
  EXPECT_EQ(t.encode("aaa"), (Ids{t.find("aa"), byte_id('a')}));
  EXPECT_EQ(t.encode("aaaa"), (Ids{t.find("aa"), t.find("aa")}));
}

TEST(TokenizerBpe, SpaceJoinsFollowingWordOnly) {
  // GPT-2 regex: " hello" is one piece, so "Ġh" can merge; "o h" never crosses a piece.
  Tokenizer t(tiny_bpe({"Ġ h", "o Ġ"}, {"Ġh", "oĠ"}));
  EXPECT_EQ(t.encode("o h"), (Ids{byte_id('o'), t.find("Ġh")}));
  EXPECT_EQ(t.decode(t.encode("o h")), "o h");
}

TEST(TokenizerBpe, SpecialTokensLongestMatchNeverMerged) {
  Tokenizer t(tiny_bpe({"< |"}, {"<|"}, {"<|a|>", "<|a|>b", "<s>"}));
  const int32_t a = t.find("<|a|>"), ab = t.find("<|a|>b"), s = t.find("<s>");
  EXPECT_EQ(t.encode("<|a|>"), (Ids{a}));
  EXPECT_EQ(t.encode("<|a|>b"), (Ids{ab}));  // longest wins
  EXPECT_EQ(t.encode("x<s><|a|>"), (Ids{byte_id('x'), s, a}));
  // Not parsed: BPE sees the text ("<|" merges).
  EXPECT_EQ(t.encode("<s>", false, false), (Ids{byte_id('<'), byte_id('s'), byte_id('>')}));
  EXPECT_EQ(t.encode("<|a", false, true), (Ids{t.find("<|"), byte_id('a')}));
  EXPECT_EQ(t.decode({a, s}), "<|a|><s>");
  EXPECT_EQ(t.decode({a, byte_id('x')}, true), "x");
}

TEST(TokenizerBpe, Llama3IgnoresMergesForWholeTokens) {
  // HF BPE ignore_merges (Llama 3): a piece that is a token is emitted even when no merge
  // path builds it; GPT-2 style vocabularies still go byte by byte.
  VocabData v = tiny_bpe({}, {"xyz"});
  Tokenizer gpt2(v);
  EXPECT_EQ(gpt2.encode("xyz"), (Ids{byte_id('x'), byte_id('y'), byte_id('z')}));
  v.pre = "llama3";
  Tokenizer llama3(std::move(v));
  EXPECT_EQ(llama3.encode("xyz"), (Ids{llama3.find("xyz")}));
}

TEST(TokenizerBpe, MissingByteTokenIsDropped) {
  VocabData v = tiny_bpe({}, {});
  // Remove byte 0x04 from the alphabet by renaming its token.
  v.tokens[4] = "<unused-4>";
  v.types[4] = TokenType::Unused;
  Tokenizer t(std::move(v));
  EXPECT_EQ(t.encode("a\x04" "b"), (Ids{byte_id('a'), byte_id('b')}));
}

TEST(TokenizerBpe, InvalidUtf8IsEncodedByteByByte) {
  Tokenizer t(tiny_bpe({}, {}));
  const std::string bad = "a\xff\xc3(b";
  const Ids ids = t.encode(bad);
  EXPECT_EQ(ids.size(), bad.size());
  EXPECT_EQ(t.decode(ids), bad);
}

TEST(TokenizerBpe, AddSpecialUsesFlags) {
  VocabData v = tiny_bpe({}, {}, {"<bos>", "<eos>"});
  v.bos_id = 256;
  v.eos_id = 257;
  v.add_bos = true;
  v.add_eos = true;
  Tokenizer t(std::move(v));
  EXPECT_EQ(t.encode("a", true), (Ids{256, byte_id('a'), 257}));
  EXPECT_EQ(t.encode("a", false), (Ids{byte_id('a')}));
  EXPECT_TRUE(t.is_eog(257));
  EXPECT_FALSE(t.is_eog(256));
}

TEST(TokenizerBpe, RejectsUnknownModelAndPre) {
  VocabData v = tiny_bpe({}, {});
  v.pre = "no-such-pre";
  EXPECT_THROW(Tokenizer{v}, Error);
  v.pre = "gpt2";
  v.model = "wordpiece";
  EXPECT_THROW(Tokenizer{v}, Error);
  v.model = "gpt2";
  v.merges = {"nospace"};
  EXPECT_THROW(Tokenizer{v}, Error);
}

TEST(VocabFromGguf, ReadsKeysAndRejectsBadOnes) {
  const VocabData src = tiny_bpe({"a b"}, {"ab"}, {"<|im_end|>"});
  auto image = [&](bool with_merges, int32_t eos, size_t n_types) {
    GgufWriter w;
    w.set_str("tokenizer.ggml.model", "gpt2");
    w.set_str("tokenizer.ggml.pre", "smollm");
    w.set_str_array("tokenizer.ggml.tokens", src.tokens);
    std::vector<int32_t> types;
    for (size_t i = 0; i < n_types; ++i) types.push_back(static_cast<int32_t>(src.types[i]));
    w.set_i32_array("tokenizer.ggml.token_type", types);
    if (with_merges) w.set_str_array("tokenizer.ggml.merges", src.merges);
    w.set_u32("tokenizer.ggml.eos_token_id", static_cast<uint32_t>(eos));
    w.set_bool("tokenizer.ggml.add_bos_token", false);
    w.set_str("tokenizer.chat_template", "<|im_start|>");
    return w.to_bytes();
  };
  const int32_t im_end = static_cast<int32_t>(src.tokens.size()) - 1;
  {
    const auto bytes = image(true, im_end, src.tokens.size());
    auto f = GgufFile::from_memory(bytes.data(), bytes.size(), "tiny.gguf");
    const VocabData v = vocab_from_gguf(*f);
    EXPECT_EQ(v.pre, "smollm");
    EXPECT_EQ(v.tokens, src.tokens);
    EXPECT_EQ(v.merges, src.merges);
    EXPECT_EQ(v.eos_id, im_end);
    EXPECT_EQ(v.eog_ids, (Ids{im_end}));
    EXPECT_EQ(v.types.back(), TokenType::Control);
    Tokenizer t(v);
    EXPECT_EQ(t.encode("ab<|im_end|>"), (Ids{t.find("ab"), im_end}));
  }
  for (auto [merges, eos, n_types] : {std::tuple{false, im_end, src.tokens.size()},
                                      std::tuple{true, im_end + 5, src.tokens.size()},
                                      std::tuple{true, im_end, src.tokens.size() - 1}}) {
    const auto bytes = image(merges, eos, n_types);
    auto f = GgufFile::from_memory(bytes.data(), bytes.size(), "bad.gguf");
    EXPECT_THROW(vocab_from_gguf(*f), Error);
  }
}

// ---------------------------------------------------------------- pre-tokenizers
std::vector<std::string> pieces(const std::string& pre, const std::string& text) {
  PreTokenizer p(pre);
  std::vector<std::string_view> out;
  p.split(text, out);
  return {out.begin(), out.end()};
}

TEST(PreTokenizer, Gpt2AndSmollmDigits) {
  using V = std::vector<std::string>;
  EXPECT_EQ(pieces("gpt2", "Hello world's 123  x\n"), (V{"Hello", " world", "'s", " 123", " ", " x", "\n"}));
  // smollm isolates every digit before the GPT-2 regex: " 12" -> " ", "1", "2".
  EXPECT_EQ(pieces("smollm", "a 12b"), (V{"a", " ", "1", "2", "b"}));
  EXPECT_EQ(pieces("llama3", "12345 I'M"), (V{"123", "45", " I", "'M"}));
  EXPECT_EQ(pieces("qwen2", "ab12"), (V{"ab", "1", "2"}));
  // U+0085 is White_Space for Oniguruma (HF): "a\u0085b" -> "a", "\u0085", "b".
  EXPECT_EQ(pieces("gpt2", "a\xC2\x85" "b"), (V{"a", "\xC2\x85", "b"}));
}

nlohmann::json load_fixture(const std::string& name);

TEST(PreTokenizer, MatchesHfPreTokenizers) {
  // HF pre_tokenize_str pieces (Oniguruma) for every corpus string and pre-tokenizer.
  const auto fx = load_fixture("pretokenize.json");
  const auto& texts = fx.at("texts");
  for (const auto& [name, all] : fx.at("pieces").items()) {
    PreTokenizer p(name);
    int n_bad = 0;
    for (size_t i = 0; i < texts.size(); ++i) {
      std::vector<std::string_view> got;
      const std::string text = texts[i];
      p.split(text, got);
      const auto want = all[i].get<std::vector<std::string>>();
      if (std::vector<std::string>(got.begin(), got.end()) != want && ++n_bad <= 5)
        ADD_FAILURE() << name << ": pieces differ for " << nlohmann::json(text).dump();
    }
    EXPECT_EQ(n_bad, 0) << name;
  }
}

TEST(TokenizerBpe, RandomBytesRoundTrip) {
  // Full byte alphabet, no merges: any byte string (valid UTF-8 or not) must survive.
  Tokenizer t(tiny_bpe({"a b", "ab c"}, {"ab", "abc"}, {"<s>"}));
  uint32_t x = 1;
  for (int it = 0; it < 500; ++it) {
    std::string s;
    const int n = it % 40;
    for (int k = 0; k < n; ++k) {
      x = x * 1103515245u + 12345u;
      s.push_back(static_cast<char>((x >> 16) & 0xFF));
    }
    EXPECT_EQ(t.decode(t.encode(s, false, false)), s);
  }
  EXPECT_THROW(t.decode({-1}), Error);
  EXPECT_THROW(t.token_bytes(1 << 20), Error);
}

// ---------------------------------------------------------------- tiny SentencePiece vocab
VocabData tiny_spm() {
  VocabData v;
  v.model = "llama";
  auto add = [&](std::string t, float score, TokenType ty) {
    v.tokens.push_back(std::move(t));
    v.scores.push_back(score);
    v.types.push_back(ty);
  };
  add("<unk>", 0, TokenType::Unknown);
  add("<s>", 0, TokenType::Control);
  add("</s>", 0, TokenType::Control);
  for (int b = 0; b < 256; ++b) add(fmt::format("<0x{:02X}>", b), 0, TokenType::Byte);
  // 259..
  add("\xE2\x96\x81", -1, TokenType::Normal);  // ▁
  add("a", -2, TokenType::Normal);
  add("b", -3, TokenType::Normal);
  add("c", -4, TokenType::Normal);
  add("ab", -5, TokenType::Normal);
  add("bc", -1.5f, TokenType::Normal);  // higher score than "ab": wins in "abc"
  add("\xE2\x96\x81" "a", -6, TokenType::Normal);
  add("\xE2\x96\x81" "ab", -7, TokenType::Normal);
  add("abc", -20, TokenType::Unused);     // merge target that must be split back
  add("<html>", 0, TokenType::UserDefined);
  v.bos_id = 1;
  v.eos_id = 2;
  v.unk_id = 0;
  v.add_bos = true;
  return v;
}

TEST(TokenizerSpm, ScoreOrderAndSpaces) {
  Tokenizer t(tiny_spm());
  const int32_t a = t.find("a"), bc = t.find("bc"), sp_ab = t.find("\xE2\x96\x81" "ab");
  // "abc": bc (-1.5) merges before ab (-5); "abc" (Unused) is split back to a + bc.
  EXPECT_EQ(t.encode("abc"), (Ids{a, bc}));
  EXPECT_EQ(t.encode(" ab"), (Ids{sp_ab}));
  EXPECT_EQ(t.encode("abc", true), (Ids{1, a, bc}));
  EXPECT_EQ(t.decode(t.encode("a ab")), "a ab");
}

TEST(TokenizerSpm, ByteFallbackAndUserDefined) {
  Tokenizer t(tiny_spm());
  // "é" (C3 A9) is not a piece: two byte tokens. "<html>" is user-defined: always matched.
  const Ids ids = t.encode("\xC3\xA9<html>a", false, false);
  EXPECT_EQ(ids, (Ids{3 + 0xC3, 3 + 0xA9, t.find("<html>"), t.find("a")}));
  EXPECT_EQ(t.decode(ids), "\xC3\xA9<html>a");
  EXPECT_EQ(t.token_bytes(3 + 0x41), "A");
}

TEST(TokenizerSpm, AddSpacePrefix) {
  VocabData v = tiny_spm();
  v.add_space_prefix = true;
  Tokenizer t(std::move(v));
  EXPECT_EQ(t.encode("ab"), (Ids{t.find("\xE2\x96\x81" "ab")}));
  EXPECT_EQ(t.decode(t.encode("ab")), "ab");
}

// ---------------------------------------------------------------- Utf8Stream
TEST(Utf8Stream, HoldsBackPartialSequences) {
  Utf8Stream s;
  const std::string emoji = "\xF0\x9F\x98\x80";  // U+1F600
  EXPECT_EQ(s.push("a"), "a");
  EXPECT_EQ(s.push(emoji.substr(0, 1)), "");
  EXPECT_EQ(s.push(emoji.substr(1, 2)), "");
  EXPECT_EQ(s.push(emoji.substr(3) + "b\xC3"), emoji + "b");
  EXPECT_EQ(s.push("\xA9"), "\xC3\xA9");
  EXPECT_EQ(s.push("\xE4\xB8"), "");
  EXPECT_EQ(s.flush(), "\xE4\xB8");
  EXPECT_EQ(s.push("\xFF" "x"), "\xFF" "x");  // ill-formed bytes are not held
  EXPECT_EQ(s.push("\x80"), "\x80");          // stray continuation
}

// ---------------------------------------------------------------- SmolLM2 golden
std::string model_path(const char* sub, const char* file) {
  const char* dir = std::getenv("KVZ_MODELS_DIR");
  return std::string(dir ? dir : "/root/.cache/kvzip/models") + "/" + sub + "/" + file;
}

nlohmann::json load_fixture(const std::string& name) {
  std::ifstream f(std::string(KVZ_SOURCE_DIR) + "/tests/golden/data/" + name);
  if (!f) throw std::runtime_error("missing fixture " + name);
  return nlohmann::json::parse(f);
}

class SmolLM2Tokenizer : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string path = model_path("smollm2-135m", "SmolLM2-135M-Instruct.Q4_1.gguf");
    if (!std::filesystem::exists(path)) return;
    auto f = GgufFile::open(path);
    tok_ = new Tokenizer(vocab_from_gguf(*f));
  }
  static void TearDownTestSuite() {
    delete tok_;
    tok_ = nullptr;
  }
  void SetUp() override {
    if (!tok_)
      GTEST_SKIP() << "SmolLM2 GGUF not found (set KVZ_MODELS_DIR or run scripts/pull-model.sh smollm2-135m)";
  }
  static Tokenizer* tok_;
};
Tokenizer* SmolLM2Tokenizer::tok_ = nullptr;

TEST_F(SmolLM2Tokenizer, Metadata) {
  const auto& v = tok_->vocab();
  EXPECT_EQ(v.model, "gpt2");
  EXPECT_EQ(v.pre, "smollm");
  EXPECT_EQ(tok_->n_vocab(), 49152);
  EXPECT_EQ(tok_->find("<|im_start|>"), 1);
  EXPECT_TRUE(tok_->is_eog(2));  // <|im_end|>
  EXPECT_TRUE(tok_->is_eog(0));  // <|endoftext|>
  EXPECT_FALSE(v.add_bos);
  EXPECT_NE(v.chat_template.find("<|im_start|>"), std::string::npos);
  EXPECT_EQ(tok_->encode("<|im_start|>user"), (Ids{1, 4093}));
  const Ids plain = tok_->encode("<|im_start|>", false, /*parse_special=*/false);
  EXPECT_GT(plain.size(), 1u);
  EXPECT_EQ(tok_->decode(plain), "<|im_start|>");
  EXPECT_EQ(tok_->decode({1, 4093, 2}, /*skip_special=*/true), "user");
}

// Every fixture string must give the reference ids, and decode back to its bytes (or to
// the recorded bytes when the reference drops bytes missing from the vocab).
void expect_golden(const Tokenizer& tok, const std::string& fixture) {
  const auto fx = load_fixture(fixture);
  const auto& cases = fx.at("cases");
  ASSERT_GE(cases.size(), 200u);
  int n_bad = 0;
  for (const auto& c : cases) {
    const std::string text = c.at("text");
    const Ids want = c.at("ids").get<Ids>();
    const Ids got = tok.encode(text);
    if (got != want && ++n_bad <= 10) ADD_FAILURE() << "ids differ for " << nlohmann::json(text).dump();
    std::string dec = text;
    if (c.contains("decoded_hex")) {
      const std::string hex = c.at("decoded_hex");
      dec.clear();
      for (size_t i = 0; i + 1 < hex.size(); i += 2) dec.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
    }
    EXPECT_EQ(tok.decode(got), dec) << nlohmann::json(text).dump();
  }
  EXPECT_EQ(n_bad, 0) << "of " << cases.size() << " strings";
}

TEST_F(SmolLM2Tokenizer, GoldenIdsMatchHfTokenizers) { expect_golden(*tok_, "tokenizer_smollm2.json"); }

TEST_F(SmolLM2Tokenizer, GoldenChatIds) {
  const auto fx = load_fixture("chat_templates.json");
  for (const auto& c : fx.at("families").at("smollm2").at("cases")) {
    if (!c.contains("ids")) continue;
    EXPECT_EQ(tok_->encode(c.at("expected").get<std::string>()), c.at("ids").get<Ids>());
  }
}

TEST_F(SmolLM2Tokenizer, ThreadsAgree) {
  const auto fx = load_fixture("tokenizer_smollm2.json");
  std::vector<std::string> texts;
  std::vector<Ids> want;
  for (const auto& c : fx.at("cases")) {
    texts.push_back(c.at("text"));
    want.push_back(c.at("ids").get<Ids>());
  }
  std::vector<int> bad(4, 0);
  std::vector<std::thread> th;
  for (int it = 0; it < 4; ++it)
    th.emplace_back([&, it] {
      for (int rep = 0; rep < 3; ++rep)
        for (size_t i = 0; i < texts.size(); ++i)
          if (tok_->encode(texts[(i + it * 37) % texts.size()]) != want[(i + it * 37) % texts.size()]) ++bad[it];
    });
  for (auto& t : th) t.join();
  EXPECT_EQ(bad, std::vector<int>(4, 0));
}

TEST_F(SmolLM2Tokenizer, EncodesAndDecodes16kTokens) {
  // Varied text so the per-piece cache does not hide the BPE cost.
  std::string text;
  uint32_t x = 12345;
  const char* words[] = {"attention", "cache", "Ünïcödé", "東京タワー", "x=42;", "  ", "\n", "don't", "😀", "KVzip"};
  while (text.size() < 70000) {
    x = x * 1664525u + 1013904223u;
    text += words[(x >> 16) % 10];
    text += std::to_string(x % 1000) + std::string(1, static_cast<char>('a' + (x >> 8) % 26)) + " ";
  }
  const Ids ids = tok_->encode(text);
  EXPECT_GE(ids.size(), 16000u);
  EXPECT_EQ(tok_->decode(ids), text);
}

// ---------------------------------------------------------------- Qwen2.5 golden (pre = qwen2, NFC)
TEST(Nfc, ComposesAndReorders) {
  EXPECT_EQ(nfc::normalize("e\xCC\x81"), "\xC3\xA9");                   // e + U+0301 -> é
  EXPECT_EQ(nfc::normalize("\xE2\x84\xAB"), "\xC3\x85");               // U+212B ANGSTROM -> Å
  EXPECT_EQ(nfc::normalize("\xE1\x84\x80\xE1\x85\xA1\xE1\x86\xA8"), "\xEA\xB0\x81");  // jamo -> 각
  // q + dot below (220) + dot above (230) stays; a + dot above + dot below reorders.
  EXPECT_EQ(nfc::normalize("a\xCC\x87\xCC\xA3"), "\xE1\xBA\xA1\xCC\x87");  // ạ + U+0307
  EXPECT_EQ(nfc::normalize("x\xff\xCC\x81"), "x\xff\xCC\x81");     // raw byte blocks composition
  EXPECT_TRUE(nfc::is_trivially_nfc("plain ascii \xC3\xA9"));
}

class Qwen25Tokenizer : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string path = model_path("qwen2.5-coder-0.5b", "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf");
    if (!std::filesystem::exists(path)) return;
    auto f = GgufFile::open(path);
    tok_ = new Tokenizer(vocab_from_gguf(*f));
  }
  static void TearDownTestSuite() {
    delete tok_;
    tok_ = nullptr;
  }
  void SetUp() override {
    if (!tok_)
      GTEST_SKIP() << "Qwen2.5-Coder GGUF not found (set KVZ_MODELS_DIR or run scripts/pull-model.sh qwen2.5-coder-0.5b)";
  }
  static Tokenizer* tok_;
};
Tokenizer* Qwen25Tokenizer::tok_ = nullptr;

TEST_F(Qwen25Tokenizer, GoldenIdsMatchHfTokenizers) { expect_golden(*tok_, "tokenizer_qwen25.json"); }

// ---------------------------------------------------------------- Gemma 3 golden
class Gemma3Tokenizer : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string path = model_path("gemma3-270m", "gemma-3-270m-q4_k_m.gguf");
    if (!std::filesystem::exists(path)) return;
    auto f = GgufFile::open(path);
    tok_ = new Tokenizer(vocab_from_gguf(*f));
  }
  static void TearDownTestSuite() {
    delete tok_;
    tok_ = nullptr;
  }
  void SetUp() override {
    if (!tok_)
      GTEST_SKIP() << "Gemma 3 GGUF not found (set KVZ_MODELS_DIR or run scripts/pull-model.sh gemma3-270m)";
  }
  static Tokenizer* tok_;
};
Tokenizer* Gemma3Tokenizer::tok_ = nullptr;

TEST_F(Gemma3Tokenizer, Metadata) {
  const auto& v = tok_->vocab();
  EXPECT_EQ(v.model, "llama");
  EXPECT_EQ(tok_->n_vocab(), 262144);
  EXPECT_FALSE(v.add_space_prefix);
  EXPECT_TRUE(v.add_bos);
  EXPECT_EQ(tok_->encode("hi", true).front(), v.bos_id);
  EXPECT_TRUE(tok_->is_eog(tok_->find("<end_of_turn>")));
  EXPECT_TRUE(tok_->is_eog(v.eos_id));
}

TEST_F(Gemma3Tokenizer, GoldenIdsMatchHfTokenizers) { expect_golden(*tok_, "tokenizer_gemma3.json"); }

TEST_F(Gemma3Tokenizer, EncodesAndDecodes16kTokens) {
  std::string text;
  uint32_t x = 777;
  const char* words[] = {"attention", "cache", "Ünïcödé", "東京タワー", "x=42;", "  ", "\n", "don't", "😀", "KVzip"};
  while (text.size() < 80000) {
    x = x * 1664525u + 1013904223u;
    text += words[(x >> 16) % 10];
    text += std::to_string(x % 1000) + std::string(1, static_cast<char>('a' + (x >> 8) % 26)) + " ";
  }
  const Ids ids = tok_->encode(text);
  EXPECT_GE(ids.size(), 16000u);
  EXPECT_EQ(tok_->decode(ids), text);
}

// ---------------------------------------------------------------- HF tokenizer.json
// The HF folders made by scripts/make-hf-models.sh carry each model's tokenizer.json in
// its original shape, serialized from the very `tokenizers` objects that produced the
// golden fixtures above; so the same ids are the HF reference for the tokenizer.json path.
std::string hf_dir(const std::string& name) {
  const char* dir = std::getenv("KVZ_HF_DIR");
  return std::string(dir ? dir : "/root/.cache/kvzip/hf") + "/" + name;
}

struct HfCase {
  const char* folder;
  const char* fixture;
};
class HfTokenizerJson : public ::testing::TestWithParam<HfCase> {};

TEST_P(HfTokenizerJson, GoldenIdsMatchHfTokenizers) {
  const std::string dir = hf_dir(GetParam().folder);
  if (!std::filesystem::exists(dir + "/tokenizer.json") || !std::filesystem::exists(dir + "/kvzip_tokenizer.txt"))
    GTEST_SKIP() << dir << " not found (scripts/make-hf-models.sh makes it)";
  const Tokenizer tok(vocab_from_hf(dir));
  EXPECT_EQ(tok.vocab().model, "hf-bpe");
  expect_golden(tok, GetParam().fixture);
}

INSTANTIATE_TEST_SUITE_P(Models, HfTokenizerJson,
                         ::testing::Values(HfCase{"smollm2-135m", "tokenizer_smollm2.json"},
                                           HfCase{"smollm2-135m-bf16", "tokenizer_smollm2.json"},
                                           HfCase{"qwen2.5-coder-0.5b", "tokenizer_qwen25.json"},
                                           HfCase{"gemma3-270m", "tokenizer_gemma3.json"}),
                         [](const auto& info) {
                           std::string n = info.param.folder;
                           for (char& c : n)
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           return n;
                         });

TEST(HfTokenizerJson, MergesInBothFormsAndHostileFiles) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / "kvz_hf_tok_test";
  fs::create_directories(dir);
  auto write = [&](const std::string& name, const std::string& text) { std::ofstream(dir / name) << text; };
  // Byte-level BPE over a tiny alphabet: "a b" string merges vs [a, b] array merges.
  const std::string head = R"({"model": {"type": "BPE", "unk_token": null, "vocab": {"a": 0, "b": 1, "ab": 2, "Ġ": 3, "Ġab": 4},
      "merges": )";
  const std::string tail = R"(}, "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
      "added_tokens": [{"id": 5, "content": "<s>", "special": true}]})";
  for (const std::string merges : {R"(["a b", "Ġ ab"])", R"([["a", "b"], ["Ġ", "ab"]])"}) {
    write("tokenizer.json", head + merges + tail);
    const Tokenizer tok(vocab_from_hf(dir.string()));
    EXPECT_EQ(tok.encode("ab ab<s>"), (Ids{2, 4, 5})) << merges;
    EXPECT_EQ(tok.decode({2, 4, 5}), "ab ab<s>");
  }
  auto error_of = [&](const std::string& json) -> std::string {
    write("tokenizer.json", json);
    try {
      vocab_from_hf(dir.string());
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_NE(error_of("{").find("not valid JSON"), std::string::npos);
  EXPECT_NE(error_of(R"({"model": {"type": "Unigram", "vocab": []}})").find("'Unigram' is not supported"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"model": {"type": "BPE", "vocab": {"a": -4}, "merges": []}})").find("outside"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [3]}})").find("neither"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []},
                         "normalizer": {"type": "NFKC"}})").find("normalizer 'NFKC' is not supported"),
            std::string::npos);
  fs::remove_all(dir);
}


// The flat token index: every text found at its first id, absent texts -1, whatever the
// table's probing does with thousands of near-identical keys.
TEST(TokenIndexTest, FindsEveryTokenAndKeepsTheFirstOfARepeat) {
  std::vector<std::string> toks;
  for (int i = 0; i < 5000; ++i) toks.push_back(fmt::format("t{}", i));
  toks.push_back("t17");  // a repeat: id 5000
  toks.push_back("");     // an empty text is a text
  const TokenIndex idx(toks);
  for (int i = 0; i < 5000; ++i) ASSERT_EQ(idx.find(toks[i]), i);
  EXPECT_EQ(idx.find("t17"), 17);
  EXPECT_EQ(idx.find(""), 5001);
  EXPECT_EQ(idx.find("t5000"), -1);
  EXPECT_EQ(idx.find("t1 "), -1);
  EXPECT_EQ(TokenIndex().find("x"), -1);
}

// The flat merge table: the first rule of a pair wins, the table grows past its first size.
TEST(MergeTableTest, FirstRuleOfAPairWinsAcrossGrowth) {
  MergeTable t;
  for (int32_t i = 0; i < 3000; ++i) t.insert(i, i + 1, {i, 10000 + i});
  for (int32_t i = 0; i < 3000; ++i) t.insert(i, i + 1, {99999, 0});  // later duplicates: ignored
  EXPECT_EQ(t.size(), 3000u);
  for (int32_t i = 0; i < 3000; ++i) {
    const MergeTable::Entry* e = t.find(i, i + 1);
    ASSERT_NE(e, nullptr);
    EXPECT_EQ(e->rank, i);
    EXPECT_EQ(e->result, 10000 + i);
  }
  EXPECT_EQ(t.find(1, 0), nullptr);
  EXPECT_EQ(t.find(0, 2), nullptr);
  EXPECT_EQ(MergeTable().find(0, 1), nullptr);
}

}  // namespace
}  // namespace kvz
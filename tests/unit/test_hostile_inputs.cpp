// Hostile inputs: a model file with one wrong-typed or nonsensical field must fail to load
// with a kvz::Error naming the file and the key (docs/reliability.md), never abort and
// never load into a model that generates NaN. Four layers: JsonReader itself; synthetic
// models (synthetic_model.h) with one field changed; the committed corpus tests/hostile/
// (written by tests/hostile/make.py), each case of which names its expected error in its
// README; and the CLI run on hostile folders.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>

#include "core/error.h"
#include "io/json_file.h"
#include "model/model.h"
#include "synthetic_model.h"
#include "test_paths.h"

using namespace kvz;
namespace fs = std::filesystem;

namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::string load_error(const std::string& path) {
  return error_of([&] { Model::load(path); });
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

#define EXPECT_HAS(text, part) EXPECT_NE(std::string(text).find(part), std::string::npos) << (text)

}  // namespace

// ------------------------------------------------------------------------------ JsonReader

TEST(JsonReader, TypedReadsNameTheFileTheKeyPathAndBothTypes) {
  const JsonReader r = JsonReader::parse(
      R"({"s": "text", "i": 5, "x": 2.5, "b": true, "n": null, "u": 18446744073709551615,
          "a": {"list": [1, "two", [3]]}, "odd key": 1})",
      "f.json");
  EXPECT_EQ(r.get_str("s"), "text");
  EXPECT_EQ(r.get_int("i", 0, 10), 5);
  EXPECT_EQ(r.get_number("i"), 5.0);  // an integer is a number
  EXPECT_EQ(r.get_number("x"), 2.5);
  EXPECT_TRUE(r.get_bool("b"));
  EXPECT_EQ(r.at("a").at("list")[1].str(), "two");
  EXPECT_EQ(r.at("u").u64(), 18446744073709551615ull);

  EXPECT_EQ(error_of([&] { r.get_int("s", 0, 10); }), R"(f.json: "s" is a string ("text"), expected an integer)");
  EXPECT_EQ(error_of([&] { r.get_str("i"); }), R"(f.json: "i" is an integer (5), expected a string)");
  EXPECT_EQ(error_of([&] { r.get_int("x", 0, 10); }), R"(f.json: "x" is a number (2.5), expected an integer)");
  EXPECT_EQ(error_of([&] { r.get_bool("s"); }), R"(f.json: "s" is a string ("text"), expected a boolean)");
  EXPECT_EQ(error_of([&] { r.at("a").at("list")[0].str(); }),
            R"(f.json: "a.list[0]" is an integer (1), expected a string)");
  EXPECT_EQ(error_of([&] { r.at("a").at("list")[2].object(); }),
            R"(f.json: "a.list[2]" is an array ([3]), expected an object)");
  EXPECT_EQ(error_of([&] { r.at("a").at("list")[3]; }), R"(f.json: "a.list" has 3 elements, expected at least 4)");
  EXPECT_EQ(error_of([&] { r.get_int("i", 0, 4); }), R"(f.json: "i" = 5 is outside [0, 4])");
  // Parsed JSON cannot hold inf (1e999 is a parse error), a document built in memory can.
  const nlohmann::json inf = {{"big", INFINITY}};
  EXPECT_EQ(error_of([&] { JsonReader::borrow(inf, "m.json").get_number("big"); }),
            R"(m.json: "big" is a number (inf), expected a finite number)");
  EXPECT_HAS(error_of([] { JsonReader::parse(R"({"big": 1e999})", "o.json"); }), "o.json: not valid JSON");
  EXPECT_HAS(error_of([&] { r.at("u").integer(); }), R"(f.json: "u" = 18446744073709551615 is too large)");
  EXPECT_EQ(error_of([&] { r.get_str("missing"); }), R"(f.json: "missing" is missing, expected a string)");
  EXPECT_EQ(error_of([&] { r.at("a").get_int("deep", 0, 1); }), R"(f.json: "a.deep" is missing, expected an integer)");
  EXPECT_EQ(error_of([&] { r.at("odd key").str(); }), R"(f.json: "['odd key']" is an integer (1), expected a string)");
  EXPECT_EQ(error_of([&] { r.at("s").find("k"); }), R"(f.json: "s" is a string ("text"), expected an object)");
  const std::string long_text(100, 'z');
  EXPECT_EQ(error_of([&] { JsonReader::parse("[\"" + long_text + "\"]", "g.json")[0].integer(); }),
            "g.json: \"[0]\" is a string (\"" + std::string(40, 'z') + "...\"), expected an integer");

  // Null is absent: defaults apply, required reads say missing.
  EXPECT_FALSE(r.has("n"));
  EXPECT_FALSE(r.find("n").has_value());
  EXPECT_EQ(r.get_str("n", "dflt"), "dflt");
  EXPECT_EQ(r.get_int("n", 0, 9, 7), 7);
  EXPECT_EQ(error_of([&] { r.get_bool("n"); }), R"(f.json: "n" is missing, expected a boolean)");
  // A default does not excuse a present value of the wrong type.
  EXPECT_EQ(error_of([&] { r.get_bool("s", false); }), R"(f.json: "s" is a string ("text"), expected a boolean)");

  EXPECT_EQ(error_of([] { JsonReader::parse("[1, 2]", "top.json").object(); }),
            "top.json: the top-level value is an array ([1,2]), expected an object");
  EXPECT_HAS(error_of([] { JsonReader::parse("{\"a\": ", "cut.json"); }), "cut.json: not valid JSON");
  const std::string missing = (fs::temp_directory_path() / "kvz_no_such_file.json").string();
  EXPECT_EQ(error_of([&] { JsonReader::open(missing); }), missing + ": cannot open");
}

TEST(JsonReader, MembersAndElementsCarryTheirPaths) {
  const JsonReader r = JsonReader::parse(R"({"m": {"k1": [true], "k.2": [false]}})", "p.json");
  std::vector<std::string> paths;
  for (const auto& [k, v] : r.at("m").members())
    for (const JsonReader& e : v.elements()) paths.push_back(e.path());
  EXPECT_EQ(paths, (std::vector<std::string>{"m['k.2'][0]", "m.k1[0]"}));  // key order
  const nlohmann::json borrowed = {{"x", 1}};
  EXPECT_EQ(error_of([&] { JsonReader::borrow(borrowed, "c.json", "kvzip").get_str("x"); }),
            R"(c.json: "kvzip.x" is an integer (1), expected a string)");
}

// ------------------------------------------------------ synthetic HF folder, one JSON field

// One-field type changes across the four JSON files of an HF folder; each was an uncaught
// nlohmann::json::type_error (SIGABRT) or was silently ignored. The error must start with
// the file's full path and name the key path and both types.
TEST(HostileInputs, HfJsonTypeConfusionsNameFileAndKey) {
  test::SyntheticSpec spec;
  test::HfFolder f("hostile_json");
  test::write_hf_copy(spec, f);
  f.write("generation_config.json", R"({"bos_token_id": 257, "eos_token_id": [258]})");
  ASSERT_EQ(load_error(f.dir.string()), "");

  struct Case {
    const char* file;
    const char* pointer;  // JSON pointer of the changed field; "" replaces the whole file
    const char* value;    // JSON text
    const char* want;     // after "<dir>/<file>: "
  };
  const Case cases[] = {
      {"config.json", "/model_type", "5", R"("model_type" is an integer (5), expected a string)"},
      {"config.json", "/use_sliding_window", R"("yes")", R"("use_sliding_window" is a string ("yes"), expected a boolean)"},
      {"config.json", "/rope_parameters", R"("fast")", R"("rope_parameters" is a string ("fast"), expected an object)"},
      {"config.json", "/rope_scaling", R"({"rope_type": "linear", "factor": "x"})",
       R"("rope_scaling.factor" is a string ("x"), expected a finite number)"},
      {"config.json", "/layer_types", "[1, 2]", R"("layer_types[0]" is an integer (1), expected a string)"},
      {"config.json", "/tie_word_embeddings", R"("true")",
       R"("tie_word_embeddings" is a string ("true"), expected a boolean)"},
      {"config.json", "/text_config", "3", R"("text_config" is an integer (3), expected an object)"},
      {"tokenizer.json", "/model/dropout", R"("x")", R"("model.dropout" is a string ("x"), expected a finite number)"},
      {"tokenizer.json", "/model/byte_fallback", "1", R"("model.byte_fallback" is an integer (1), expected a boolean)"},
      {"tokenizer.json", "/added_tokens/0/content", "7",
       R"("added_tokens[0].content" is an integer (7), expected a string)"},
      {"tokenizer.json", "/pre_tokenizer/add_prefix_space", R"("no")",
       R"("pre_tokenizer.add_prefix_space" is a string ("no"), expected a boolean)"},
      {"tokenizer_config.json", "/chat_template", "[1, 2]", R"("chat_template[0]" is an integer (1), expected an object)"},
      {"tokenizer_config.json", "/add_bos_token", R"("yes")", R"("add_bos_token" is a string ("yes"), expected a boolean)"},
      {"tokenizer_config.json", "/pad_token", "[0]",
       R"("pad_token" is an array ([0]), expected a string or an object with "content")"},
      {"generation_config.json", "", "[1, 2]", "the top-level value is an array ([1,2]), expected an object"},
      {"generation_config.json", "/eos_token_id", R"("2")", R"("eos_token_id" is a string ("2"), expected an integer)"},
      {"model.safetensors.index.json", "/weight_map/model.norm.weight", "5",
       R"("weight_map['model.norm.weight']" is an integer (5), expected a string)"},
  };
  for (const Case& c : cases) {
    const std::string original = f.read(c.file);
    nlohmann::json j = nlohmann::json::parse(original);
    if (*c.pointer)
      j[nlohmann::json::json_pointer(c.pointer)] = nlohmann::json::parse(c.value);
    else
      j = nlohmann::json::parse(c.value);
    f.write(c.file, j.dump());
    EXPECT_HAS(load_error(f.dir.string()), (f.dir / c.file).string() + ": " + c.want);
    f.write(c.file, original);
  }
  ASSERT_EQ(load_error(f.dir.string()), "");  // every case was undone
}

// Values of the right type that make no model: named by their config.json key and the
// metadata key the loader read them as.
TEST(HostileInputs, HfConfigValuesNameTheConfigKey) {
  test::SyntheticSpec spec;
  test::HfFolder f("hostile_values");
  test::write_hf_copy(spec, f);
  const std::string config = f.read("config.json"), cpath = (f.dir / "config.json").string();
  auto with = [&](const char* key, nlohmann::json v) {
    nlohmann::json c = nlohmann::json::parse(config);
    c[key] = std::move(v);
    f.write("config.json", c.dump());
    const std::string e = load_error(f.dir.string());
    f.write("config.json", config);
    return e;
  };
  EXPECT_HAS(with("rms_norm_eps", -1e-5), cpath + R"(: "rms_norm_eps" (metadata key 'llama.attention.layer_norm_rms_epsilon'))"
                                                   " = -1e-05, expected a finite number > 0");
  EXPECT_HAS(with("rope_theta", 0.0), cpath + R"(: "rope_theta" (metadata key 'llama.rope.freq_base') = 0, expected a)");
  EXPECT_HAS(with("rope_theta", 1e39), R"("rope_theta" (metadata key 'llama.rope.freq_base') = inf)");  // float overflow
  EXPECT_HAS(with("rope_scaling", {{"rope_type", "linear"}, {"factor", -2.0}}),
             cpath + R"(: "rope_scaling.factor" (metadata key 'llama.rope.scaling.factor') = -2, expected a finite)");
  EXPECT_HAS(with("rope_scaling", {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 4.0},
                                   {"high_freq_factor", 1.0}, {"original_max_position_embeddings", 64}}),
             R"("rope_scaling.high_freq_factor" (metadata key 'llama.rope.scaling.high_freq_factor') = 1, expected )"
             "more than low_freq_factor (4)");
  EXPECT_HAS(with("max_position_embeddings", 0), cpath + R"(: "max_position_embeddings" (metadata key)");
  EXPECT_HAS(with("num_hidden_layers", "two"),
             cpath + R"(: "num_hidden_layers" (metadata key 'llama.block_count') has type string, expected integer)");
  // generation_config.json's end ids must be embedding rows.
  f.write("generation_config.json", R"({"eos_token_id": [258, 5000]})");
  EXPECT_HAS(load_error(f.dir.string()),
             R"(end-of-generation id 5000 (generation_config.json "eos_token_id") is outside the vocabulary [0, 259))");
}

// ------------------------------------------------------------ synthetic GGUF, one number

TEST(HostileInputs, GgufHyperParametersNameTheKeyAndValue) {
  struct Case {
    const char* tag;
    std::function<void(test::SyntheticSpec&)> change;
    const char* want;  // after "<path>: "
  };
  const std::string eps = "llama.attention.layer_norm_rms_epsilon", base = "llama.rope.freq_base";
  const Case cases[] = {
      {"eps_nan", [&](auto& s) { s.f32_keys[eps] = NAN; },
       "metadata key 'llama.attention.layer_norm_rms_epsilon' = nan, expected a finite number > 0"},
      {"eps_neg", [&](auto& s) { s.f32_keys[eps] = -1e-5f; },
       "metadata key 'llama.attention.layer_norm_rms_epsilon' = -1e-05, expected a finite number > 0"},
      {"eps_zero", [&](auto& s) { s.f32_keys[eps] = 0.0f; },
       "metadata key 'llama.attention.layer_norm_rms_epsilon' = 0, expected a finite number > 0"},
      {"eps_inf", [&](auto& s) { s.f32_keys[eps] = INFINITY; },
       "metadata key 'llama.attention.layer_norm_rms_epsilon' = inf, expected a finite number > 0"},
      {"base_zero", [&](auto& s) { s.f32_keys[base] = 0.0f; },
       "metadata key 'llama.rope.freq_base' = 0, expected a finite number > 1"},
      {"base_neg", [&](auto& s) { s.f32_keys[base] = -10000.0f; },
       "metadata key 'llama.rope.freq_base' = -10000, expected a finite number > 1"},
      {"base_inf", [&](auto& s) { s.f32_keys[base] = INFINITY; },
       "metadata key 'llama.rope.freq_base' = inf, expected a finite number > 1"},
      {"base_nan", [&](auto& s) { s.f32_keys[base] = NAN; },
       "metadata key 'llama.rope.freq_base' = nan, expected a finite number > 1"},
      {"linear_inf",
       [](auto& s) {
         s.str_keys["llama.rope.scaling.type"] = "linear";
         s.f32_keys["llama.rope.scaling.factor"] = INFINITY;
       },
       "metadata key 'llama.rope.scaling.factor' = inf, expected a finite number > 0"},
      {"llama3_ctx_inf",
       [](auto& s) {
         s.str_keys["llama.rope.scaling.type"] = "llama3";
         s.f32_keys["llama.rope.scaling.factor"] = 8;
         s.f32_keys["llama.rope.scaling.low_freq_factor"] = 1;
         s.f32_keys["llama.rope.scaling.high_freq_factor"] = 4;
         s.f32_keys["llama.rope.scaling.original_context_length"] = INFINITY;
       },
       "metadata key 'llama.rope.scaling.original_context_length' = inf, expected a finite number > 0"},
      {"heads", [](auto& s) { s.n_head_kv = 3; },
       "metadata key 'llama.attention.head_count' = 4 is not a multiple of the 3 KV heads"},
      {"bos", [](auto& s) { s.u32_keys["tokenizer.ggml.bos_token_id"] = 300; },
       "tokenizer.ggml.bos_token_id = 300 is out of range for a vocabulary of 259 tokens"},
      {"gemma_window",
       [](auto& s) {
         s.arch = "gemma3";
         s.n_swa = 0;
       },
       "metadata key 'gemma3.attention.sliding_window' = 0, expected a positive window"},
      {"gemma_swa_base",
       [](auto& s) {
         s.arch = "gemma3";
         s.rope_base_swa = NAN;
       },
       "metadata key 'gemma3.rope.freq_base_swa' = nan, expected a finite number > 1"},
      {"gemma_softcap",
       [](auto& s) {
         s.arch = "gemma3";
         s.f32_keys["gemma3.final_logit_softcapping"] = INFINITY;
       },
       "metadata key 'gemma3.final_logit_softcapping' = inf, expected a finite number >= 0"},
      {"gemma_scalar",
       [](auto& s) {
         s.arch = "gemma3";
         s.f32_keys["gemma3.attention.query_pre_attn_scalar"] = -1;
       },
       "metadata key 'gemma3.attention.query_pre_attn_scalar' = -1, expected a finite number > 0"},
  };
  for (const char* arch : {"llama", "gemma3"}) {  // the unchanged models load
    test::SyntheticSpec spec;
    spec.arch = arch;
    const std::string path = test::write_synthetic_llama(spec, std::string("hostile_ok_") + arch);
    EXPECT_EQ(load_error(path), "") << arch;
    std::remove(path.c_str());
  }
  for (const Case& c : cases) {
    test::SyntheticSpec spec;
    c.change(spec);
    const std::string path = test::write_synthetic_llama(spec, std::string("hostile_") + c.tag);
    EXPECT_HAS(load_error(path), path + ": " + c.want);
    std::remove(path.c_str());
  }
}

// --------------------------------------------------------------------- the committed corpus

namespace {

const fs::path kCorpus = fs::path(KVZ_SOURCE_DIR) / "tests" / "hostile";

// A case folder's model: its model.gguf, or base-hf/ with the case's files laid over it
// (copied to `scratch`).
std::string assemble(const fs::path& dir, const fs::path& scratch) {
  if (fs::exists(dir / "model.gguf")) return (dir / "model.gguf").string();
  fs::remove_all(scratch);
  fs::copy(kCorpus / "base-hf", scratch);
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename() != "README") fs::copy_file(e.path(), scratch / e.path().filename(), fs::copy_options::overwrite_existing);
  return scratch.string();
}

// "<what it is> -- expect: <substring>" from the case's README.
std::string expected_error(const fs::path& dir) {
  const std::string readme = slurp(dir / "README");
  const size_t at = readme.find(" -- expect: ");
  if (at == std::string::npos) return "";
  std::string want = readme.substr(at + 12);
  while (!want.empty() && (want.back() == '\n' || want.back() == '\r')) want.pop_back();
  return want;
}

}  // namespace

TEST(HostileInputs, CommittedCorpusFailsAsEachReadmeSays) {
  ASSERT_TRUE(fs::exists(kCorpus / "make.py")) << kCorpus;
  std::vector<fs::path> dirs;
  for (const auto& e : fs::directory_iterator(kCorpus))
    if (e.is_directory()) dirs.push_back(e.path());
  std::sort(dirs.begin(), dirs.end());
  const fs::path scratch = test::temp_path("kvz_hostile_corpus");
  int n_base = 0, n_hostile = 0;
  for (const fs::path& d : dirs) {
    const std::string name = d.filename().string(), want = expected_error(d);
    ASSERT_FALSE(want.empty()) << name << ": README has no ' -- expect: ' line";
    const std::string err = load_error(assemble(d, scratch));
    if (name.rfind("base-", 0) == 0) {
      EXPECT_EQ(want, "loads") << name;
      EXPECT_EQ(err, "") << name;
      ++n_base;
    } else {
      EXPECT_HAS(err, want) << " (case " << name << ")";
      ++n_hostile;
    }
  }
  fs::remove_all(scratch);
  EXPECT_EQ(n_base, 3);
  EXPECT_GE(n_hostile, 36);  // make.py's cases; a lost folder shows here
}

// ------------------------------------------------------------------------------------ CLI

// The built binary on hostile folders: one "kvzip: error:" line naming the file and key,
// exit status 1, no abort (an abort gives the shell status 134).
TEST(HostileInputs, CliPrintsOneErrorLineAndExitsOne) {
  const fs::path scratch = test::temp_path("kvz_hostile_cli");
  const fs::path err_file = scratch.string() + ".err";
  struct Case {
    const char* corpus_case;
    const char* want;  // after "kvzip: error: <model path>"
  };
  const Case cases[] = {
      {"hf-config-model-type-int", "/config.json: \"model_type\" is an integer (5), expected a string"},
      {"hf-tokenizer-dropout-string", "/tokenizer.json: \"model.dropout\" is a string (\"x\"), expected a finite number"},
      {"hf-genconfig-array", "/generation_config.json: the top-level value is an array ([1,2]), expected an object"},
      {"gguf-rope-base-nan", ": metadata key 'llama.rope.freq_base' = nan, expected a finite number > 1"},
  };
  for (const Case& c : cases) {
    const std::string model = assemble(kCorpus / c.corpus_case, scratch);
    const std::string cmd = fmt::format("'{}' generate -m '{}' -p hello -n 4 -t 1 > /dev/null 2> '{}'", KVZ_CLI_PATH,
                                        model, err_file.string());
    const int status = std::system(cmd.c_str());
    ASSERT_TRUE(WIFEXITED(status)) << cmd;
    EXPECT_EQ(WEXITSTATUS(status), 1) << cmd;
    const std::string err = slurp(err_file);
    EXPECT_EQ(err, "kvzip: error: " + model + c.want + "\n");
  }
  fs::remove_all(scratch);
  fs::remove(err_file);
}

// The one int64 conversion behind JsonReader::integer and the server's request fields:
// exact values only, whole doubles only when asked, nothing past what an int64 holds.
TEST(JsonReader, ExactInt64TakesOnlyValuesAnInt64Holds) {
  using nlohmann::json;
  const int64_t lo = std::numeric_limits<int64_t>::min(), hi = std::numeric_limits<int64_t>::max();
  for (bool whole : {false, true}) {
    EXPECT_EQ(exact_int64(json(5), whole), 5);
    EXPECT_EQ(exact_int64(json(lo), whole), lo);
    EXPECT_EQ(exact_int64(json(static_cast<uint64_t>(hi)), whole), hi);
    EXPECT_EQ(exact_int64(json::parse("9223372036854775808"), whole), std::nullopt);  // 2^63, unsigned
    EXPECT_EQ(exact_int64(json("5"), whole), std::nullopt);
    EXPECT_EQ(exact_int64(json(true), whole), std::nullopt);
    EXPECT_EQ(exact_int64(json(0.5), whole), std::nullopt);
    EXPECT_EQ(exact_int64(json(std::numeric_limits<double>::infinity()), whole), std::nullopt);
    EXPECT_EQ(exact_int64(json(9223372036854775808.0), whole), std::nullopt);  // 2^63 as a double
  }
  EXPECT_EQ(exact_int64(json(5.0), false), std::nullopt);
  EXPECT_EQ(exact_int64(json(5.0), true), 5);
  EXPECT_EQ(exact_int64(json(-9223372036854775808.0), true), lo);
  EXPECT_EQ(exact_int64(json(-3.0), true), -3);
}

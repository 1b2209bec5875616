// kvzip: command-line front end. A thin layer over the library: parse options, call the
// engine, print. Errors from the library (kvz::Error) print one line and exit 1.
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/progress.h"
#include "eval/demo_doc.h"
#include "io/head_scores_file.h"
#include "kv/kvzip_context.h"
#include "kv/press.h"
#include "io/gguf.h"
#include "model/generate.h"
#include "model/hf_source.h"
#include "model/model.h"
#include "model/session.h"
#include "tokenizer/chat_template.h"
#include "kv/kvzap_pruner.h"
#include "kvzap_cli.h"
#include "serve.h"
#include "kept.h"  // tools/cli/kept.cpp: `kvzip kept`
#include "eval.h"  // tools/cli/eval.cpp: `kvzip eval`, `kvzip report`

namespace {

using namespace kvz;

std::string human_bytes(double b) {
  const char* u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int i = 0;
  while (b >= 1024 && i < 4) {
    b /= 1024;
    ++i;
  }
  return i == 0 ? fmt::format("{:.0f} {}", b, u[i]) : fmt::format("{:.2f} {}", b, u[i]);
}

// Default model location, shared with scripts/pull-model.sh.
std::string default_model_path() {
  const char* dir = std::getenv("KVZ_MODELS_DIR");
  const char* home = std::getenv("HOME");
  std::string base = dir ? dir : std::string(home ? home : ".") + "/.cache/kvzip/models";
  return base + "/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf";
}

std::unique_ptr<Model> load_model(const std::string& path, const LoadOptions& opt) {
  ProgressBar bar("loading", "%", stderr_is_tty());
  auto m = Model::load(path, [&](double f) { bar.update(100.0 * f, 100.0); }, opt);
  bar.finish();
  return m;
}

int cmd_info(const std::string& path, bool show_tensors, const LoadOptions& opt) {
  std::unique_ptr<TensorSource> f;
  std::string format;
  if (is_model_dir(path)) {
    f = HfSource::open(path, opt);
    format = "Hugging Face folder, safetensors";
  } else {
    auto g = GgufFile::open(path);
    format = fmt::format("GGUF v{}", g->version());
    f = std::move(g);
  }
  fmt::print("file:          {} ({}, {})\n", path, human_bytes(f->file_size()), format);
  fmt::print("architecture:  {}\n", f->get_str_opt("general.architecture").value_or("?"));
  fmt::print("name:          {}\n", f->get_str_opt("general.name").value_or("?"));
  std::map<std::string, std::pair<int, uint64_t>> by_type;
  uint64_t n_params = 0;
  for (const auto& t : f->tensors()) {
    auto& e = by_type[type_name(t.type)];
    e.first++;
    e.second += t.n_bytes;
    n_params += t.n_elements();
  }
  fmt::print("parameters:    {:.1f} M in {} tensors\n", n_params / 1e6, f->tensors().size());
  for (const auto& [name, e] : by_type)
    fmt::print("  {:<6} {:4} tensors  {:>12}\n", name, e.first, human_bytes(static_cast<double>(e.second)));
  fmt::print("metadata:\n");
  for (const auto& [k, v] : f->metadata()) {
    std::string s;
    if (v.is_array()) {
      s = fmt::format("[{} x {}]", v.array_size(), gguf_type_name(v.elem_type));
    } else if (auto* i = std::get_if<int64_t>(&v.v)) {
      s = std::to_string(*i);
    } else if (auto* d = std::get_if<double>(&v.v)) {
      s = fmt::format("{}", *d);
    } else if (auto* b = std::get_if<bool>(&v.v)) {
      s = *b ? "true" : "false";
    } else if (auto* str = std::get_if<std::string>(&v.v)) {
      s = k == "tokenizer.chat_template" ? fmt::format("({} chars, shown below)", str->size()) : *str;
    }
    fmt::print("  {:<44} {}\n", k, s);
  }
  // Model-level view: what the engine makes of it.
  try {
    auto m = Model::load(path, {}, opt);
    const HParams& hp = m->hp();
    fmt::print("model:\n  layers {}  embd {}  heads {} (kv {}, d_head {})  ffn {}  vocab {}  ctx {}\n", hp.n_layer,
               hp.n_embd, hp.n_head, hp.n_head_kv, hp.d_head, hp.n_ff, hp.n_vocab, hp.n_ctx_train);
    fmt::print("  rope base {}  eps {}  tied embeddings {}  softmax scale {}\n", hp.rope_base, hp.norm_eps,
               hp.tied_embeddings, hp.softmax_scale());
    int n_local = 0;
    for (int il = 0; il < hp.n_layer; ++il) n_local += hp.is_swa(il);
    if (n_local > 0)
      fmt::print("  sliding window {} on {} of {} layers (rope base {}); KVzip scores and prunes the other {}\n",
                 hp.n_swa, n_local, hp.n_layer, hp.rope_base_swa, hp.n_layer - n_local);
    fmt::print("  KV cache per token: {} (f16 K+V, {})\n",
               human_bytes(2.0 * (hp.n_layer - n_local) * hp.n_head_kv * hp.d_head * 2),
               n_local ? "global layers; local layers hold at most ~2 windows" : "all layers");
    fmt::print("  weights read per generated token: {}\n", human_bytes(static_cast<double>(m->weight_bytes_per_token())));
    const auto& vocab = m->tokenizer().vocab();
    fmt::print("tokenizer:     {} / pre '{}', {} tokens, bos {} eos {}\n", vocab.model, vocab.pre, vocab.tokens.size(),
               vocab.bos_id, vocab.eos_id);
    fmt::print("chat template: {}\n", chat_family_name(detect_chat_family(vocab.chat_template)));
  } catch (const Error& e) {
    fmt::print("model:         cannot run: {}\n", e.what());
  }
  if (auto tmpl = f->get_str_opt("tokenizer.chat_template")) fmt::print("--- chat template ---\n{}\n---\n", *tmpl);
  if (show_tensors)
    for (const auto& t : f->tensors()) {
      std::string shape;
      for (size_t i = 0; i < t.shape.size(); ++i) shape += (i ? " x " : "") + std::to_string(t.shape[i]);
      fmt::print("  {:<32} {:<6} {:<16} {:>10}\n", t.name, type_name(t.type), shape,
                 human_bytes(static_cast<double>(t.n_bytes)));
    }
  return 0;
}

struct GenOpts {
  std::string model;
  std::string prompt;
  std::string system;
  bool chat = false;
  int n_predict = 128;
  int threads = 0;
  float temp = 0.0f;
  int top_k = 40;
  float top_p = 0.95f;
  uint64_t seed = 0;
  int64_t n_ctx = 0;
  std::string kv_type = "f16";
  LoadOptions load;
  std::string method;  // "" (full cache) or "kvzap"
  cli::KvzapCli kvzap;
};

// The realised kept fraction per layer and overall, and the surrogate's share of the time.
void print_kvzap_stats(const KvzapStats& st, const KvzapModel& sur, const Model& m, double forward_s) {
  std::string per_layer;
  for (size_t il = 0; il < st.entered.size(); ++il)
    per_layer += fmt::format("{}{:.2f}", il ? " " : "", st.kept_fraction(static_cast<int>(il)));
  fmt::print(stderr, "[kvzap] kept {:.1f}% of {} (token, KV head) pairs (compression_ratio {:.3f}) | per layer: {}\n",
             100.0 * st.kept_fraction(), [&] { int64_t e = 0; for (auto x : st.entered) e += x; return e; }(),
             1.0 - st.kept_fraction(), per_layer);
  fmt::print(stderr, "[kvzap] surrogate {} ({} MACs/token = {:.2f}% of the model's {} in matmuls): predict {:.3f} s = {:.2f}% of forward time\n",
             sur.kind() == KvzapModel::Kind::Mlp ? "mlp" : "linear", sur.macs_per_token(),
             100.0 * static_cast<double>(sur.macs_per_token()) / static_cast<double>(model_matmul_macs_per_token(m.hp())),
             model_matmul_macs_per_token(m.hp()), st.predict_seconds, forward_s > 0 ? 100.0 * st.predict_seconds / forward_s : 0.0);
}

int cmd_generate(const GenOpts& o) {
  auto m = load_model(o.model, o.load);
  const Tokenizer& tok = m->tokenizer();
  std::string text = o.prompt;
  if (o.chat) {
    const ChatFamily fam = detect_chat_family(tok.vocab().chat_template);
    if (fam == ChatFamily::Unknown) fail("{}: the model's chat template is not one kvzip recognises; run without --chat", o.model);
    std::vector<ChatMessage> msgs;
    if (!o.system.empty()) msgs.push_back({"system", o.system});
    msgs.push_back({"user", o.prompt});
    text = render_chat(fam, msgs, true);
  }
  const std::vector<int32_t> ids = tok.encode(text, /*add_special=*/true, /*parse_special=*/o.chat);
  ThreadPool pool(o.threads);
  Session s(*m, pool, o.n_ctx, parse_kv_type(o.kv_type));
  GenerateParams gp;
  gp.n_predict = o.n_predict;
  gp.sampling = {o.temp, o.top_k, o.top_p, o.seed};
  std::unique_ptr<KvzapModel> sur;
  std::unique_ptr<KvzapPruner> pruner;
  if (!o.method.empty()) {
    if (o.method != "kvzap") fail("generate --method {}: only kvzap prunes while generating", o.method);
    const KvzapOptions ko = cli::kvzap_options(o.kvzap);
    const std::string dir = kvzap_default_dir(o.kvzap.dir, o.model, cli::kvzip_cache_root());
    sur = std::make_unique<KvzapModel>(KvzapModel::load(dir, *m));
    pruner = std::make_unique<KvzapPruner>(s, *sur, ko);
    gp.n_batch = o.kvzap.n_batch;
    gp.after_forward = [&] { pruner->prune(); };
  }
  Utf8Stream utf8;
  if (!o.chat) {
    std::fputs(o.prompt.c_str(), stdout);
    std::fflush(stdout);
  }
  ProgressBar bar("prefill", "tok", stderr_is_tty() && ids.size() >= 1024);
  const GenerateStats st = generate(
      s, ids, gp,
      [&](int32_t id) {
        bar.finish();
        if (!tok.is_eog(id)) {
          std::fputs(utf8.push(tok.token_bytes(id)).c_str(), stdout);
          std::fflush(stdout);
        }
        return true;
      },
      nullptr, bar.callback());
  std::fputs(utf8.flush().c_str(), stdout);
  std::fputs("\n", stdout);
  std::fflush(stdout);
  fmt::print(stderr,
             "\n[kvzip] prompt {} tok | prefill {:.1f} tok/s ({:.3f} s) | decode {} tok at {:.1f} tok/s | KV cache {} "
             "| {} threads\n",
             st.n_prompt, st.prefill_tok_s(), st.prefill_s, st.n_generated, st.decode_tok_s(),
             human_bytes(static_cast<double>(s.cache().bytes_used())), pool.size());
  if (pruner) print_kvzap_stats(pruner->stats(), *sur, *m, st.prefill_s + st.decode_s);
  return 0;
}

struct AskOpts {
  std::string model;
  std::string context_file;
  std::vector<std::string> questions;
  double ratio = 0.3;
  std::string level;          // "": the method's own default level
  std::string method = "kvzip";
  std::string params;         // "key=value,..." for the method
  bool query_aware = false;
  std::string compress_for;   // score once with this question, reuse the cache for every question
  double ada_alpha = 0.2;
  int threads = 0;
  int n_predict = 64;
  bool strict = false;
  std::string save_path, load_path;
  LoadOptions load;
  std::string head_scores;  // --level head: file from `kvzip score-heads`
  std::string kv_type = "f16";
  cli::KvzapCli kvzap;      // --method kvzap --threshold TAU: streaming eviction in prefill
};

std::string read_file(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) fail("{}: cannot open", path);
  std::string s;
  char buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) s.append(buf, n);
  std::fclose(f);
  return s;
}

std::string one_line(std::string s) {
  for (char& c : s)
    if (c == '\n' || c == '\r') c = ' ';
  return s;
}

// Full-cache and compressed answers side by side, then memory and timing. Returns the
// number of questions whose compressed answer equals the full-cache answer.
// Answers from a context saved earlier with --save: no prefill, no scoring.
int answer_from_saved(const AskOpts& o) {
  auto m = load_model(o.model, o.load);
  ThreadPool pool(o.threads);
  KvzipContext ctx(*m, pool);
  ctx.load(o.load_path);
  fmt::print("loaded {}: {} context tokens, KV cache {} ({})\n", o.load_path, ctx.n_ctx(),
             human_bytes(static_cast<double>(ctx.kv_bytes())), ctx.pruned() ? "compressed" : "full");
  GenerateParams gp;
  gp.n_predict = o.n_predict;
  for (size_t i = 0; i < o.questions.size(); ++i) {
    const QueryResult r = ctx.query(o.questions[i], gp, false);
    fmt::print("Q{}: {}\n  answer: {}   ({:.2f} ms/token)\n", i + 1, o.questions[i], one_line(r.answer),
               r.stats.n_generated > 1 ? 1e3 * r.stats.decode_s / (r.stats.n_generated - 1) : 0.0);
  }
  return 0;
}

// --method kvzap --threshold TAU: the context is pruned on the fly while it is prefilled
// (between batches of --batch tokens). System-prompt rows are protected (as KVzip keeps them).
// Questions run with eviction off: their rows are discarded afterwards anyway, and the
// context comes back exactly (KvzapPruner::begin_query / end_query).
int compare_full_and_kvzap(const AskOpts& o, const std::string& context, const std::vector<std::string>& questions,
                           const std::vector<std::string>& expected) {
  const KvzapOptions ko = cli::kvzap_options(o.kvzap);
  auto m = load_model(o.model, o.load);
  const std::string dir = kvzap_default_dir(o.kvzap.dir, o.model, cli::kvzip_cache_root());
  const KvzapModel sur = KvzapModel::load(dir, *m);
  ThreadPool pool(o.threads);
  ContextOptions co;
  co.kv_type = parse_kv_type(o.kv_type);
  KvzipContext full(*m, pool, co), ctx(*m, pool, co);
  using clock = std::chrono::steady_clock;
  auto secs = [](clock::time_point a) { return std::chrono::duration<double>(clock::now() - a).count(); };
  auto t0 = clock::now();
  full.prefill(context);
  const double full_s = secs(t0);
  KvzapPruner pruner(ctx.session(), sur, ko);
  pruner.protect_prefix(ctx.n_sys());
  t0 = clock::now();
  ctx.prefill(context, [&](int64_t, int64_t) { pruner.prune(); });
  const double kvzap_s = secs(t0);
  const KvzapStats st = pruner.stats();
  fmt::print("kvzap ({}, {}): threshold {}, window {}; prefill {:.2f} s (full cache {:.2f} s, {:.2f}x)\n",
             sur.kind() == KvzapModel::Kind::Mlp ? "mlp" : "linear", dir, o.kvzap.threshold, ko.window, kvzap_s, full_s,
             full_s > 0 ? kvzap_s / full_s : 0.0);
  print_kvzap_stats(st, sur, *m, kvzap_s);
  GenerateParams gp;
  gp.n_predict = o.n_predict;
  int same = 0, full_ok = 0, comp_ok = 0;
  for (size_t i = 0; i < questions.size(); ++i) {
    const QueryResult a = full.query(questions[i], gp, false);
    pruner.begin_query();
    const QueryResult b = ctx.query(questions[i], gp, false);
    pruner.end_query();
    const bool eq = a.answer == b.answer;
    same += eq;
    fmt::print("Q{}: {}\n", i + 1, questions[i]);
    if (i < expected.size()) {
      full_ok += a.answer.find(expected[i]) != std::string::npos;
      comp_ok += b.answer.find(expected[i]) != std::string::npos;
      fmt::print("  expected:          {}\n", expected[i]);
    }
    fmt::print("  full cache:        {}\n", one_line(a.answer));
    fmt::print("  kvzap ({:.0f}% kept): {}   [{}]\n\n", 100 * st.kept_fraction(), one_line(b.answer),
               eq ? "same" : "differs");
  }
  fmt::print("answers identical to the full cache: {}/{}\n", same, questions.size());
  if (!expected.empty())
    fmt::print("answers containing the expected fact: full cache {}/{}, kvzap {}/{}\n", full_ok, expected.size(),
               comp_ok, expected.size());
  fmt::print("KV cache: full {} -> kvzap {} ({:.1f}% of the bytes)\n", human_bytes(static_cast<double>(full.kv_bytes())),
             human_bytes(static_cast<double>(ctx.kv_bytes())), 100.0 * ctx.kv_bytes() / full.kv_bytes());
  return same;
}

int compare_full_and_compressed(const AskOpts& o, const std::string& context, const std::vector<std::string>& questions,
                                const std::vector<std::string>& expected) {
  if (o.method == "kvzap" && !o.kvzap.threshold.empty()) return compare_full_and_kvzap(o, context, questions, expected);
  // The method and its parameters are checked before anything slow runs.
  const MethodInfo& mi = method_info(o.method);
  std::map<std::string, std::string> pp = parse_press_params(o.params);
  if (o.method == "kvzap" && !pp.count("dir")) pp["dir"] = kvzap_default_dir(o.kvzap.dir, o.model, cli::kvzip_cache_root());
  std::unique_ptr<Press> press = make_press(o.method, pp);
  if (!o.level.empty()) parse_prune_level(o.level);
  if (o.query_aware && !o.compress_for.empty()) fail("--query-aware and --compress-for exclude each other");
  if (o.query_aware && !o.save_path.empty()) fail("--save needs a query-agnostic compression (drop --query-aware)");
  auto m = load_model(o.model, o.load);
  ThreadPool pool(o.threads);
  ContextOptions co;
  co.retain_full = o.query_aware;  // query-aware: every question rebuilds from the full cache
  co.kv_type = parse_kv_type(o.kv_type);
  KvzipContext ctx(*m, pool, co);
  const bool tty = stderr_is_tty();
  using clock = std::chrono::steady_clock;
  auto secs = [](clock::time_point a) { return std::chrono::duration<double>(clock::now() - a).count(); };

  auto t0 = clock::now();
  {
    ProgressBar bar("prefill", "tok", tty);
    ctx.prefill(context, bar.callback());
  }
  const double prefill_s = secs(t0);
  const size_t bytes_full = ctx.kv_bytes();
  fmt::print("context: {} tokens (+{} system prompt tokens); prefill {:.2f} s ({:.0f} tok/s)\n", ctx.n_ctx(),
             ctx.n_sys(), prefill_s, (ctx.n_ctx() + ctx.n_sys()) / prefill_s);

  GenerateParams gp;
  gp.n_predict = o.n_predict;
  std::vector<QueryResult> full;
  for (const auto& q : questions) full.push_back(ctx.query(q, gp, false));

  SelectOptions so;
  so.ratio = o.ratio;
  so.level = o.level.empty() ? mi.level : parse_prune_level(o.level);
  so.strict_threshold = o.strict;
  so.ada_alpha = o.ada_alpha;
  const std::string level_name = prune_level_name(so.level);
  PruneReport pr;
  double score_s = 0;
  if (!o.query_aware) {
    t0 = clock::now();
    if (so.level == PruneLevel::Head && !o.head_scores.empty()) {
      const HeadScoreFile hs = load_head_scores(o.head_scores, m->identity());  // context-independent scores
      fmt::print("head scores from {} ({})\n", o.head_scores, hs.source);
      pr = ctx.prune_heads(hs.scores, o.ratio);
    } else {
      ProgressBar bar(o.method + " scoring", "tok", tty);
      pr = ctx.compress(*press, so, o.compress_for, bar.callback());  // --level head without a file: max over tokens
    }
    score_s = secs(t0);
    fmt::print("{} scoring {:.2f} s ({:.2f}x prefill); pruned to ratio {} ({} level): kept {:.1f}% of context pairs\n\n",
               o.method, score_s, score_s / prefill_s, o.ratio, level_name, 100.0 * pr.ratio_true);
  } else {
    fmt::print("{} query-aware: the cache is scored and pruned again for every question ({} level, ratio {})\n\n",
               o.method, level_name, o.ratio);
  }

  if (!o.save_path.empty()) {
    ctx.save(o.save_path);
    fmt::print("saved the compressed context to {}\n\n", o.save_path);
  }
  int same = 0, full_ok = 0, comp_ok = 0;
  double dec_full = 0, dec_comp = 0;
  int64_t tok_full = 0, tok_comp = 0;
  for (size_t i = 0; i < questions.size(); ++i) {
    if (o.query_aware) {
      const auto tq = clock::now();
      pr = ctx.compress(*press, so, questions[i]);
      score_s += secs(tq);
      fmt::print("[{} for Q{}: kept {:.1f}% of context pairs, {:.2f} s]\n", o.method, i + 1, 100.0 * pr.ratio_true,
                 secs(tq));
    }
    const QueryResult c = ctx.query(questions[i], gp, false);
    const bool eq = c.answer == full[i].answer;
    same += eq;
    fmt::print("Q{}: {}\n", i + 1, questions[i]);
    if (i < expected.size()) {
      const bool fo = full[i].answer.find(expected[i]) != std::string::npos;
      const bool co2 = c.answer.find(expected[i]) != std::string::npos;
      full_ok += fo;
      comp_ok += co2;
      fmt::print("  expected:          {}\n", expected[i]);
    }
    fmt::print("  full cache:        {}\n", one_line(full[i].answer));
    fmt::print("  compressed ({:.0f}%): {}   [{}]\n\n", 100 * o.ratio, one_line(c.answer), eq ? "same" : "differs");
    dec_full += full[i].stats.decode_s;
    dec_comp += c.stats.decode_s;
    tok_full += std::max<int64_t>(0, full[i].stats.n_generated - 1);
    tok_comp += std::max<int64_t>(0, c.stats.n_generated - 1);
  }
  fmt::print("answers identical to the full cache: {}/{}\n", same, questions.size());
  if (!expected.empty())
    fmt::print("answers containing the expected fact: full cache {}/{}, compressed {}/{}\n", full_ok, expected.size(),
               comp_ok, expected.size());
  fmt::print("KV cache: full {} -> compressed {} ({:.1f}% of the bytes)\n", human_bytes(static_cast<double>(bytes_full)),
             human_bytes(static_cast<double>(pr.kv_bytes_after)), 100.0 * pr.kv_bytes_after / bytes_full);
  fmt::print("decode: full {:.2f} ms/token, compressed {:.2f} ms/token ({} threads)\n",
             tok_full ? 1e3 * dec_full / tok_full : 0.0, tok_comp ? 1e3 * dec_comp / tok_comp : 0.0, pool.size());
  return same;
}

int cmd_methods() {
  fmt::print("compression methods (`ask --method NAME --param key=value,...`; default budget level in brackets)\n");
  for (const MethodInfo& m : press_registry()) {
    fmt::print("\n{:<19} [{}] {}\n", m.name, prune_level_name(m.level), m.description);
    for (const PressParam& p : m.params) {
      const std::string def = p.kind == PressParam::Text ? (p.text_def.empty() ? "\"\"" : p.text_def)
                                                         : fmt::format("{}", p.def);
      const std::string range = p.kind == PressParam::Text ? "" : fmt::format(" in [{}, {}]", p.min, p.max);
      fmt::print("  {:<12} = {:<8} {}{}\n", p.name, def, p.help, range);
    }
  }
  fmt::print("\nlevels: pair (one global budget), pair-uniform (same per head), head (whole heads), adakv (per-layer "
             "budget spread over heads, --ada-alpha safeguard); --query-aware scores with each question present\n");
  return 0;
}

// The CLI's one error path: whatever escapes a command becomes one `kvzip: error: ...` line
// on stderr and exit status 1. Bad input throws kvz::Error; the other kinds are reported
// the same way rather than aborting the process.
int report_error(std::exception_ptr e) {
  std::string msg;
  try {
    std::rethrow_exception(e);
  } catch (const kvz::Error& x) {
    msg = x.what();
  } catch (const std::bad_alloc&) {
    msg = "out of memory";
  } catch (const nlohmann::json::exception& x) {
    msg = fmt::format("malformed JSON: {}", x.what());
  } catch (const std::exception& x) {
    msg = x.what();
  } catch (...) {
    msg = "unknown exception";
  }
  std::fprintf(stderr, "kvzip: error: %s\n", msg.c_str());
  return 1;
}

}  // namespace

// tools/cli/bench.cpp
void add_bench_command(CLI::App& app);
int run_bench_command(const CLI::App& app);
void add_train_kvzap_command(CLI::App& app, const std::string& default_model);  // train_kvzap.cpp
int run_train_kvzap_command(const CLI::App& app);

static int run(int argc, char** argv) {
  CLI::App app{
      "kvzip — an LLM inference engine with query-agnostic KV-cache compression (KVzip).\n"
      "Models are GGUF files or Hugging Face folders (config.json, tokenizer.json, *.safetensors); get the default\n"
      "one with: scripts/pull-model.sh smollm2-135m"};
  app.require_subcommand(1);
  app.fallthrough();
  std::string convert;
  app.add_option("--convert", convert,
                 "Hugging Face folders: quantize the float weight matrices at load time (q8_0); default: use them "
                 "in place")
      ->check(CLI::IsMember({"q8_0"}));
  bool rows_layout = false;
  app.add_flag("--row-major-weights", rows_layout,
               "use the weight matrices in the file's row-major layout instead of copying them into the faster "
               "interleaved decode layout at load (saves the copy; decode is slower)");
  app.set_help_all_flag("--help-all", "show help for every command");

  std::string info_model = default_model_path();
  bool info_tensors = false;
  auto* info = app.add_subcommand("info", "print a model file's architecture, hyper-parameters, tensor types, "
                                          "tokenizer and chat template");
  info->add_option("model", info_model, "GGUF file or Hugging Face folder")->capture_default_str();
  info->add_flag("--tensors", info_tensors, "also list every tensor");

  GenOpts g;
  g.model = default_model_path();
  auto* gen = app.add_subcommand("generate", "generate text from a prompt, streaming tokens to stdout; a summary "
                                             "line (prefill and decode tokens/s, KV bytes) goes to stderr");
  gen->add_option("-m,--model", g.model, "GGUF model file or Hugging Face folder")->capture_default_str();
  gen->add_option("-p,--prompt", g.prompt, "prompt text")->required();
  gen->add_flag("--chat", g.chat, "wrap the prompt in the model's chat template as a user turn (special tokens "
                                  "in the prompt are parsed only in this mode)");
  gen->add_option("--system", g.system, "system message for --chat (default: the template's own)");
  gen->add_option("-n,--n-predict", g.n_predict, "maximum tokens to generate")->capture_default_str()->check(CLI::Range(0, 1 << 20));
  gen->add_option("-t,--threads", g.threads, "threads (0: all cores)")->capture_default_str()->check(CLI::Range(0, 1024));
  gen->add_option("--temp", g.temp, "sampling temperature; 0 is greedy")->capture_default_str()->check(CLI::Range(0.0, 100.0));
  gen->add_option("--top-k", g.top_k, "keep the k most likely tokens (0: off)")->capture_default_str()->check(CLI::Range(0, 1 << 20));
  gen->add_option("--top-p", g.top_p, "nucleus sampling mass (1: off)")->capture_default_str()->check(CLI::Range(0.0, 1.0));
  gen->add_option("--seed", g.seed, "sampling seed")->capture_default_str();
  gen->add_option("--kv-type", g.kv_type, "KV cache storage: f16 (as llama.cpp) or q8_0 (about half the memory and decode traffic)")
      ->capture_default_str()->check(CLI::IsMember({"f16", "q8_0"}));
  gen->add_option("--method", g.method, "kvzap: evict KV pairs on the fly while prefilling and decoding");
  cli::add_kvzap_options(gen, g.kvzap);
  gen->add_option("-c,--ctx", g.n_ctx, "context limit in tokens (0: the model's training context)")->capture_default_str()->check(CLI::Range(int64_t{0}, int64_t{1} << 24));

  AskOpts a;
  a.model = default_model_path();
  auto* ask = app.add_subcommand(
      "ask", "load a context once, compress its KV cache with KVzip, and answer questions from it; prints the "
             "full-cache and compressed answers side by side, KV bytes and timings");
  ask->add_option("-m,--model", a.model, "GGUF model file or Hugging Face folder")->capture_default_str();
  ask->add_option("--context", a.context_file, "text file holding the context");
  ask->add_option("--save", a.save_path, "save the compressed context to this file (reuse it with --load)");
  ask->add_option("--load", a.load_path, "answer from a context saved with --save (no prefill, no scoring)");
  ask->add_option("-q,--question", a.questions, "a question (repeat for several)")->required();
  ask->add_option("--ratio", a.ratio, "fraction of context KV pairs to KEEP, in (0, 1]")->capture_default_str();
  ask->add_option("--method", a.method, "compression method (`kvzip methods` lists them)")->capture_default_str();
  cli::add_kvzap_options(ask, a.kvzap);
  ask->add_option("--param", a.params, "method parameters, key=value[,key=value...]");
  ask->add_flag("--query-aware", a.query_aware, "score with each question present (cache rebuilt per question)");
  ask->add_option("--compress-for", a.compress_for, "score once with this question present and reuse the cache for "
                                                    "every question (how a query-aware cache fares on other questions)");
  ask->add_option("--level", a.level, "budget: pair (global), pair-uniform (same per head), head, adakv "
                                      "(default: the method's own)");
  ask->add_option("--ada-alpha", a.ada_alpha, "adakv safeguard: each head keeps at least this share of an even split")
      ->capture_default_str()->check(CLI::Range(0.0, 1.0));
  ask->add_option("--head-scores", a.head_scores, "with --level head: head scores saved by `kvzip score-heads`");
  ask->add_flag("--strict-threshold", a.strict, "reference-compatible strict threshold instead of exact top-k");
  ask->add_option("-n,--n-predict", a.n_predict, "max answer tokens")->capture_default_str()->check(CLI::Range(1, 1 << 16));
  ask->add_option("--kv-type", a.kv_type, "KV cache storage: f16 (as llama.cpp) or q8_0 (about half the memory and decode traffic)")
      ->capture_default_str()->check(CLI::IsMember({"f16", "q8_0"}));
  ask->add_option("-t,--threads", a.threads, "threads (0: all cores)")->capture_default_str()->check(CLI::Range(0, 1024));

  AskOpts d;
  d.model = default_model_path();
  int demo_records = 16;
  auto* demo = app.add_subcommand("demo", "the KVzip demo: a generated registry document full of facts, "
                                          "questions answered from the full and from the compressed cache");
  demo->add_option("-m,--model", d.model, "GGUF model file or Hugging Face folder")->capture_default_str();
  demo->add_option("--ratio", d.ratio, "fraction of context KV pairs to keep, in (0, 1]")->capture_default_str();
  demo->add_option("--method", d.method, "compression method (`kvzip methods` lists them)")->capture_default_str();
  cli::add_kvzap_options(demo, d.kvzap);
  demo->add_option("--param", d.params, "method parameters, key=value[,key=value...]");
  demo->add_flag("--query-aware", d.query_aware, "score with each question present (cache rebuilt per question)");
  demo->add_option("--level", d.level, "pair, pair-uniform, head or adakv (default: the method's own)");
  demo->add_option("--ada-alpha", d.ada_alpha, "adakv safeguard share")->capture_default_str()->check(CLI::Range(0.0, 1.0));
  demo->add_option("--records", demo_records, "fact records in the document (~50 tokens each)")->capture_default_str()->check(CLI::Range(8, 40));
  demo->add_option("--kv-type", d.kv_type, "KV cache storage: f16 (as llama.cpp) or q8_0 (about half the memory and decode traffic)")
      ->capture_default_str()->check(CLI::IsMember({"f16", "q8_0"}));
  demo->add_option("-t,--threads", d.threads, "threads (0: all cores)")->capture_default_str()->check(CLI::Range(0, 1024));

  add_bench_command(app);
  add_train_kvzap_command(app, default_model_path());
  kvz::cli::ServeCli serve_opts;
  kvz::cli::add_serve_command(app, serve_opts, default_model_path());
  kvz::cli::KeptCli kept_opts;
  kvz::cli::add_kept_command(app, kept_opts, default_model_path());

  auto* methods = app.add_subcommand("methods", "list the compression methods with their parameters and defaults");
  EvalCliOptions ev;
  ev.model = default_model_path();
  CLI::App* eval_cmd = add_eval_command(app, ev);
  ReportCliOptions rep;
  CLI::App* report_cmd = add_report_command(app, rep);

  std::string sh_model = default_model_path(), sh_out = "head_scores.kvzh", sh_context;
  int sh_threads = 0;
  auto* sh = app.add_subcommand("score-heads", "compute context-independent head scores [layers x KV heads] "
                                               "(max over tokens of KVzip pair scores) from one sample context; "
                                               "use them with `ask --level head --head-scores FILE`");
  sh->add_option("-m,--model", sh_model, "GGUF model file or Hugging Face folder")->capture_default_str();
  sh->add_option("--context", sh_context, "sample context text file (default: the demo document)");
  sh->add_option("-o,--out", sh_out, "output file")->capture_default_str();
  sh->add_option("-t,--threads", sh_threads, "threads (0: all cores)")->capture_default_str()->check(CLI::Range(0, 1024));

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  LoadOptions lopt;
  if (convert == "q8_0") lopt.convert = DType::Q8_0;
  lopt.interleave = !rows_layout;
  g.load = a.load = d.load = lopt;
  if (*info) return cmd_info(info_model, info_tensors, lopt);
  if (*methods) return cmd_methods();
  if (*gen) return cmd_generate(g);
  if (*ask) {
    if (!(a.ratio > 0 && a.ratio <= 1)) fail("--ratio {} is outside (0, 1]", a.ratio);
    if (!a.load_path.empty()) return answer_from_saved(a);
    if (a.context_file.empty()) fail("ask: give --context FILE (or --load FILE)");
    compare_full_and_compressed(a, read_file(a.context_file), a.questions, {});
    return 0;
  }
  if (app.got_subcommand("bench")) return run_bench_command(app);
  if (app.got_subcommand("train-kvzap")) return run_train_kvzap_command(app);
  if (app.got_subcommand("serve")) return kvz::cli::run_serve_command(serve_opts, lopt);
  if (app.got_subcommand("kept")) return kvz::cli::run_kept_command(kept_opts, lopt);
  if (*eval_cmd) return run_eval_command(ev, eval_cmd);
  if (*report_cmd) return run_report_command(rep);
  if (*sh) {
    auto m = load_model(sh_model, lopt);
    ThreadPool pool(sh_threads);
    KvzipContext ctx(*m, pool);
    const std::string text = sh_context.empty() ? make_demo_document().context : read_file(sh_context);
    using clock = std::chrono::steady_clock;
    const auto t0 = clock::now();
    {
      ProgressBar bar("prefill", "tok", stderr_is_tty());
      ctx.prefill(text, bar.callback());
    }
    {
      ProgressBar bar("KVzip scoring", "tok", stderr_is_tty());
      ctx.score(bar.callback());
    }
    HeadScoreFile h;
    h.n_layer = m->hp().n_layer;
    h.n_head_kv = m->hp().n_head_kv;
    h.scores = head_scores_from_pairs(ctx.scores());
    h.source = fmt::format("{} ({} tokens)", sh_context.empty() ? "kvzip demo document" : sh_context, ctx.n_ctx());
    save_head_scores(sh_out, m->identity(), h);
    fmt::print("wrote {}: {} x {} head scores from {} in {:.1f} s\n", sh_out, h.n_layer, h.n_head_kv, h.source,
               std::chrono::duration<double>(clock::now() - t0).count());
    return 0;
  }
  if (*demo) {
    if (!(d.ratio > 0 && d.ratio <= 1)) fail("--ratio {} is outside (0, 1]", d.ratio);
    const QaSample sample = make_demo_document(demo_records);
    fmt::print("kvzip demo: a generated registry of {} fact records; {} questions; keep ratio {}\n\n", demo_records,
               sample.questions.size(), d.ratio);
    compare_full_and_compressed(d, sample.context, sample.questions, sample.answers);
    return 0;
  }
  return 0;
}

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (...) {
    return report_error(std::current_exception());
  }
}

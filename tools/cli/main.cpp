// kvzip: command-line front end. A thin layer over the library: parse options, call the
// engine, print. Errors from the library (kvz::Error) print one line and exit 1.
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
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
#include "ask.h"
#include "chat.h"  // tools/cli/chat.cpp: `kvzip chat`
#include "common.h"
#include "compress.h"
#include "kvzap_cli.h"
#include "serve.h"
#include "eval_compose.h"  // tools/cli/eval_compose.cpp: `kvzip eval-compose`
#include "kept.h"  // tools/cli/kept.cpp: `kvzip kept`
#include "eval.h"  // tools/cli/eval.cpp: `kvzip eval`, `kvzip report`

namespace {

using namespace kvz;

using cli::human_bytes;
using cli::load_model;
using cli::read_text_file;

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

static int run(int argc, char** argv, const cli::ModelPlaces& places) {
  CLI::App app{fmt::format(
      "kvzip — an LLM inference engine with query-agnostic KV-cache compression (KVzip).\n"
      "Models (-m) are GGUF files, Hugging Face folders (config.json, tokenizer.json, *.safetensors) or pull names\n"
      "of scripts/models.tsv such as smollm2-135m (the default), looked up in {}; fetch one with:\n  {}",
      places.models_dir, cli::pull_command(places, cli::kDefaultModel))};
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
  const std::string default_model = cli::default_model_path(places);

  std::string info_model = default_model;
  bool info_tensors = false;
  auto* info = app.add_subcommand("info", "print a model file's architecture, hyper-parameters, tensor types, "
                                          "tokenizer and chat template");
  info->add_option("model", info_model, "GGUF file, Hugging Face folder or pull name")->capture_default_str();
  info->add_flag("--tensors", info_tensors, "also list every tensor");

  GenOpts g;
  g.model = default_model;
  auto* gen = app.add_subcommand("generate", "generate text from a prompt, streaming tokens to stdout; a summary "
                                             "line (prefill and decode tokens/s, KV bytes) goes to stderr");
  gen->add_option("-m,--model", g.model, "GGUF model file, Hugging Face folder or pull name")->capture_default_str();
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

  cli::CompressOpts co;
  co.model = default_model;
  CLI::App* compress = cli::add_compress_command(app, co);
  cli::AskOpts a;
  a.c.model = default_model;
  CLI::App* ask = cli::add_ask_command(app, a);
  cli::ChatOpts chat_opts;
  chat_opts.c.model = a.c.model;
  CLI::App* chat = cli::add_chat_command(app, chat_opts);
  cli::DemoOpts d;
  d.a.c.model = default_model;
  CLI::App* demo = cli::add_demo_command(app, d);

  add_bench_command(app);
  add_train_kvzap_command(app, default_model);
  kvz::cli::ServeCli serve_opts;
  kvz::cli::add_serve_command(app, serve_opts, default_model);
  kvz::cli::KeptCli kept_opts;
  kvz::cli::add_kept_command(app, kept_opts, default_model);
  kvz::cli::EvalComposeCli ec_opts;
  CLI::App* eval_compose = kvz::cli::add_eval_compose_command(app, ec_opts, default_model);
  kvz::cli::BenchComposeCli bc_opts;
  CLI::App* bench_compose = kvz::cli::add_bench_compose_command(app, bc_opts, default_model);

  auto* methods = app.add_subcommand("methods", "list the compression methods with their parameters and defaults");
  EvalCliOptions ev;
  ev.model = default_model;
  CLI::App* eval_cmd = add_eval_command(app, ev);
  ReportCliOptions rep;
  CLI::App* report_cmd = add_report_command(app, rep);

  std::string sh_model = default_model, sh_out = "head_scores.kvzh", sh_context;
  int sh_threads = 0;
  auto* sh = app.add_subcommand("score-heads", "compute context-independent head scores [layers x KV heads] "
                                               "(max over tokens of KVzip pair scores) from one sample context; "
                                               "use them with `ask --level head --head-scores FILE`");
  sh->add_option("-m,--model", sh_model, "GGUF model file, Hugging Face folder or pull name")->capture_default_str();
  sh->add_option("--context", sh_context, "sample context text file (default: the demo document)");
  sh->add_option("-o,--out", sh_out, "output file")->capture_default_str();
  sh->add_option("-t,--threads", sh_threads, "threads (0: all cores)")->capture_default_str()->check(CLI::Range(0, 1024));

  // Every command that takes a model: a pull name resolves through the model cache (its
  // error prints the command that fetches a missing one). One place, not one per command.
  auto model_option = [](CLI::App* c) -> CLI::Option* {
    CLI::Option* o = c->get_option_no_throw("--model");
    return o ? o : c->get_option_no_throw("model");
  };
  for (CLI::App* c : app.get_subcommands([](CLI::App*) { return true; }))
    if (CLI::Option* o = model_option(c))
      o->transform([&places](std::string s) { return cli::resolve_model(places, s); }, "", "MODEL");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  for (CLI::App* c : app.get_subcommands())
    if (CLI::Option* o = model_option(c); o && o->count() == 0) cli::require_default_model(places);
  LoadOptions lopt;
  if (convert == "q8_0") lopt.convert = DType::Q8_0;
  lopt.interleave = !rows_layout;
  g.load = co.load = a.c.load = d.a.c.load = lopt;
  if (*info) return cmd_info(info_model, info_tensors, lopt);
  if (*methods) return cmd_methods();
  if (*gen) return cmd_generate(g);
  if (*compress) return cli::run_compress_command(*compress, co);
  if (*ask) return cli::run_ask_command(*ask, a);
  if (*chat) return cli::run_chat_command(*chat, chat_opts);
  if (*demo) return cli::run_demo_command(*demo, d);
  if (app.got_subcommand("bench")) return run_bench_command(app);
  if (app.got_subcommand("train-kvzap")) return run_train_kvzap_command(app);
  if (app.got_subcommand("serve")) return kvz::cli::run_serve_command(serve_opts, lopt);
  if (app.got_subcommand("kept")) return kvz::cli::run_kept_command(kept_opts, lopt);
  if (*eval_compose) return kvz::cli::run_eval_compose_command(ec_opts, lopt);
  if (*bench_compose) return kvz::cli::run_bench_compose_command(bc_opts, lopt);
  if (*eval_cmd) return run_eval_command(ev, eval_cmd);
  if (*report_cmd) return run_report_command(rep);
  if (*sh) {
    auto m = load_model(sh_model, lopt);
    ThreadPool pool(sh_threads);
    KvzipContext ctx(*m, pool);
    const std::string text = sh_context.empty() ? make_demo_document().context : read_text_file(sh_context);
    using clock = std::chrono::steady_clock;
    const auto t0 = clock::now();
    {
      ProgressBar bar("prefill", "tok", long_work_progress());
      ctx.prefill(text, bar.callback());
    }
    {
      ProgressBar bar("KVzip scoring", "tok", long_work_progress());
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
  return 0;
}

// The binary's own path (Linux: /proc/self/exe), for finding scripts/ beside it.
static std::string exe_path(const char* argv0) {
  std::error_code ec;
  const std::filesystem::path p = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) return p.string();
  const std::filesystem::path q = std::filesystem::absolute(argv0 ? argv0 : "", ec);
  return ec ? std::string() : q.string();
}

int main(int argc, char** argv) {
  try {
    // The environment is read here only (STYLE.md): the model cache as scripts/pull-model.sh has it.
    const char* dir = std::getenv("KVZ_MODELS_DIR");
    const char* home = std::getenv("HOME");
    const char* tsv = std::getenv("KVZ_MODELS_TSV");
    const std::string models_dir = dir && *dir ? dir : std::string(home ? home : ".") + "/.cache/kvzip/models";
#ifdef KVZ_SOURCE_DIR
    const std::string source_dir = KVZ_SOURCE_DIR;
#else
    const std::string source_dir;
#endif
    const kvz::cli::ModelPlaces places =
        kvz::cli::find_model_places(exe_path(argc > 0 ? argv[0] : nullptr), source_dir, models_dir, tsv ? tsv : "");
    return run(argc, argv, places);
  } catch (...) {
    return report_error(std::current_exception());
  }
}

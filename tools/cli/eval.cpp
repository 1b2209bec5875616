// `kvzip eval` and `kvzip report`: the evaluation harness's command line (issue 6). The
// work is in src/eval/ (tasks, metrics, runner, report); this file parses options, loads
// the model, builds the samples and calls the library.
#include "eval.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "core/progress.h"
#include "eval/jsonl.h"
#include "eval/report.h"
#include "eval/runner.h"
#include "eval/tasks/registry.h"
#include "io/head_scores_file.h"
#include "kv/kvzap_pruner.h"
#include "kv/presses/kvzip.h"
#include "model/model.h"

namespace {

using namespace kvz;

std::vector<std::string> split_commas(const std::vector<std::string>& in) {
  std::vector<std::string> out;
  for (const auto& s : in) {
    size_t i = 0;
    while (i <= s.size()) {
      const size_t j = std::min(s.find(',', i), s.size());
      if (j > i) out.push_back(s.substr(i, j - i));
      i = j + 1;
    }
  }
  return out;
}

std::vector<double> parse_ratios(const std::string& s) {
  std::vector<double> out;
  for (const auto& r : split_commas({s})) {
    char* end = nullptr;
    const double v = std::strtod(r.c_str(), &end);
    if (end == r.c_str() || *end != '\0' || !(v > 0 && v <= 1)) fail("--ratios: '{}' is not a number in (0, 1]", r);
    out.push_back(v);
  }
  if (out.empty()) fail("--ratios: empty list");
  return out;
}

// "all": every standard task; "easy": every easy variant; otherwise registry names.
std::vector<std::string> expand_tasks(const std::vector<std::string>& names) {
  std::vector<std::string> out;
  for (const auto& n : names) {
    if (n == "all" || n == "easy") {
      for (const auto& t : task_registry())
        if (t.easy == (n == "easy")) out.push_back(t.name);
    } else {
      find_task(n);  // throws on an unknown name
      out.push_back(n);
    }
  }
  return out;
}

}  // namespace

CLI::App* add_eval_command(CLI::App& app, EvalCliOptions& o) {
  auto* sub = app.add_subcommand(
      "eval", "evaluate compression on generated tasks (or your JSON-lines data): one prefill and one scoring per "
              "sample, a re-prune per ratio, every question answered independently; appends JSON lines to --out "
              "and resumes an interrupted run");
  sub->add_option("-m,--model", o.model, "GGUF model file")->capture_default_str();
  sub->add_option("--task", o.tasks, "task names, comma-separated or repeated; 'all' = the standard tasks, 'easy' = "
                                     "the easy variants (see --list-tasks)");
  sub->add_option("--data", o.data_files, "JSON-lines file of your own samples (docs/eval-data.md); repeatable; "
                                          "the task name is the file's stem. A sample that does not fit the model's window (its context, "
                                          "each method's scoring pass with KVzip's repeat chunk shrunk to fit, and "
                                          "the longest question with its answer) is named on stderr and skipped "
                                          "before its prefill");
  sub->add_option("--methods", o.methods, "compression methods, comma-separated: pair (kvzip), pair-uniform, head, or any name of `kvzip methods`")
      ->capture_default_str();
  sub->add_option("--mode", o.modes,
                  "comma-separated, each method runs in each: 'agnostic' = compress once after the context, every "
                  "question answered from that cache; 'aware' = per question, the press scores with that question "
                  "present, prunes, answers it, and the full cache is restored; 'reuse' = compress once with the "
                  "sample's first question present and answer all its questions from that cache. Records are "
                  "labelled 'snapkv/aware', 'snapkv/reuse'; methods that ignore the question (the KVzip levels, "
                  "knorm, streaming_llm, random, duo_attention) run agnostic in every mode, once, under their plain name")
      ->capture_default_str();
  sub->add_option("--ratios", o.ratios, "kept fractions of the context's KV pairs; 1.0 = the full-cache answers")
      ->capture_default_str();
  sub->add_option("--samples", o.samples, "samples per task (first N of a --data file)")
      ->capture_default_str()->check(CLI::Range(1, 100000));
  sub->add_option("--seed", o.seed, "seed of the task generators")->capture_default_str();
  sub->add_option("--ctx-tokens", o.ctx_tokens, "context lengths in tokens, comma-separated: every task is "
                                                "generated at each (a length sweep, e.g. 1000,2000,4000,8000; "
                                                "0 = each task's default, see --list-tasks). Must fit the model's "
                                                "training context; the report splits a task run at several lengths "
                                                "into task@LEN rows")
      ->capture_default_str();
  sub->add_flag("--quick", o.quick, "smoke test of a few minutes: needle-easy, kv-easy, squad-easy; 1 sample; "
                                    "~500-token contexts; ratios 1.0,0.5,0.2; method pair (explicit options win)");
  sub->add_option("-o,--out", o.out, "results file (JSON lines, appended; done records are skipped)")
      ->capture_default_str();
  sub->add_flag("--no-fidelity", o.no_fidelity, "skip the teacher-forced comparison with the full cache");
  sub->add_option("--thresholds", o.thresholds, "KVzap threshold sweep, comma-separated log-scores (adds methods "
                  "kvzap@TAU: keep pairs scoring >= TAU plus the last --window context tokens; each runs once per sample, "
                  "recorded under the first --ratios value below 1 as its nominal ratio; the kept fraction reached "
                  "is r_true)");
  sub->add_option("--window", o.kvzap_window, "kvzap@TAU: protected last context tokens")->capture_default_str();
  sub->add_option("--kvzap", o.kvzap_dir, "KVzap surrogate folder for method kvzap (default ~/.cache/kvzip/kvzap/<model>-mlp, else -linear)");
  sub->add_option("--head-scores", o.head_scores, "context-independent head scores (`kvzip score-heads`) for "
                                                  "method head; default: each sample's own");
  sub->add_option("-t,--threads", o.threads, "threads (0: all cores)")->capture_default_str()->check(CLI::Range(0, 1024));
  sub->add_flag("--list-tasks", o.list_tasks, "list the tasks and exit");
  sub->add_option("--dump", o.dump, "write the samples (generated or loaded) to this JSON-lines file in the --data "
                                    "format and exit, without running the model");
  return sub;
}

int run_eval_command(EvalCliOptions o, CLI::App* sub) {
  if (o.list_tasks) {
    for (const auto& t : task_registry())
      fmt::print("{:<22} {:>5} tok  {}\n", t.name, t.default_ctx_tokens, t.description);
    return 0;
  }
  auto given = [&](const char* opt) { return sub->get_option(opt)->count() > 0; };
  if (o.quick) {
    if (!given("--task") && !given("--data")) o.tasks = {"needle-easy", "kv-easy", "squad-easy"};
    if (!given("--samples")) o.samples = 1;
    if (!given("--ratios")) o.ratios = "1.0,0.5,0.2";
    if (!given("--ctx-tokens")) o.ctx_tokens = "500";
  }
  if (o.tasks.empty() && o.data_files.empty()) fail("eval: give --task NAME (or all, easy), --data FILE or --quick");
  const std::vector<std::string> tasks = expand_tasks(split_commas(o.tasks));
  const std::vector<int64_t> ctx_lengths = parse_ctx_tokens(o.ctx_tokens);
  std::vector<EvalMode> modes;  // checked before the model loads
  for (const auto& m : split_commas({o.modes})) {
    try {
      modes.push_back(parse_eval_mode(m));
    } catch (const Error& e) {
      fail("--mode: {}", e.what());
    }
  }
  if (modes.empty()) fail("--mode: empty list (give agnostic, aware and/or reuse)");

  ProgressBar load_bar("loading", "%", stderr_is_tty());
  auto model = Model::load(o.model, [&](double f) { load_bar.update(100.0 * f, 100.0); });
  load_bar.finish();
  const Tokenizer& tok = model->tokenizer();

  std::vector<EvalSample> samples;
  TaskParams tp;
  tp.seed = o.seed;
  tp.count = [&tok](const std::string& s) {
    return static_cast<int64_t>(tok.encode(s, /*add_special=*/false, /*parse_special=*/false).size());
  };
  // A length the model cannot hold fails here, not after the shorter ones have run. Room
  // needed beyond the target: the generators' overshoot (up to ~3%), the system prompt and
  // answers (256), and the scoring pass's repeat chunk at the smallest size KVzip shrinks it
  // to near the window. Each sample is checked exactly before its prefill (run_eval).
  const int64_t n_ctx_train = model->hp().n_ctx_train;
  const int64_t reserve = kKvzipMinChunk + 64 + 256;
  for (const auto& name : tasks) {
    const TaskInfo& t = find_task(name);
    for (int64_t len : ctx_lengths) {
      const int64_t eff = len > 0 ? len : t.default_ctx_tokens;
      if (n_ctx_train > 0 && eff + eff / 32 + reserve > n_ctx_train)
        fail("--ctx-tokens: {} tokens for task {} leave no room for the scoring pass, prompt and answers in {}'s "
             "{}-token training context (keep it under {})", eff, name,
             std::filesystem::path(o.model).filename().string(), n_ctx_train, (n_ctx_train - reserve) * 32 / 33);
    }
    const std::vector<EvalSample> v = make_task_samples(t, o.samples, ctx_lengths, tp);
    samples.insert(samples.end(), v.begin(), v.end());
  }
  for (const auto& f : o.data_files) {
    std::vector<EvalSample> d = load_jsonl_samples(f, std::filesystem::path(f).stem().string());
    if (static_cast<int>(d.size()) > o.samples) d.resize(static_cast<size_t>(o.samples));
    samples.insert(samples.end(), d.begin(), d.end());
  }

  if (!o.dump.empty()) {
    std::ofstream f(o.dump);
    if (!f) fail("{}: cannot write", o.dump);
    for (const auto& s : samples) {
      const nlohmann::json j = {{"task", s.task},         {"index", s.index},     {"info", s.info},
                                {"context", s.context},   {"questions", s.questions}, {"answers", s.answers},
                                {"metric", s.metrics},    {"max_new_tokens", s.max_new_tokens}, {"prompt", s.prompt}};
      f << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    }
    fmt::print(stderr, "[eval] wrote {} samples to {}\n", samples.size(), o.dump);
    return 0;
  }

  EvalOptions eo;
  eo.model_name = std::filesystem::path(o.model).filename().string();
  eo.methods = split_commas({o.methods});
  eo.ratios = parse_ratios(o.ratios);
  eo.modes = modes;
  eo.fidelity = !o.no_fidelity;
  eo.out_path = o.out;
  eo.progress = long_work_progress();
  for (const auto& t : split_commas({o.thresholds})) eo.methods.push_back("kvzap@" + t);
  eo.method_env.kvzap_window = o.kvzap_window;
  if (std::any_of(eo.methods.begin(), eo.methods.end(), [](const std::string& n) { return n.rfind("kvzap", 0) == 0; })) {
    const char* home = std::getenv("HOME");
    eo.method_env.kvzap_dir =
        kvzap_default_dir(o.kvzap_dir, o.model, std::string(home ? home : ".") + "/.cache/kvzip");
    KvzapModel::load(eo.method_env.kvzap_dir, *model);  // a wrong or missing file fails before any work
  }
  if (!o.head_scores.empty()) eo.method_env.head_scores = load_head_scores(o.head_scores, model->identity()).scores;
  ThreadPool pool(o.threads);
  int bad = 0;
  const size_t done_before = done_record_keys(o.out, &bad).size();
  fmt::print(stderr, "[eval] {}: {} samples ({} tasks{}), methods {}, modes {}, ratios {}; {} records already in {}{}\n",
             eo.model_name, samples.size(), tasks.size(), o.data_files.empty() ? "" : " + data files", o.methods,
             o.modes, o.ratios, done_before, o.out, bad ? fmt::format(" ({} unreadable lines ignored)", bad) : "");
  const auto t0 = std::chrono::steady_clock::now();
  const EvalRunStats st = run_eval(*model, pool, samples, eo);
  fmt::print(stderr, "[eval] wrote {} records ({} skipped as done) from {} samples in {:.1f} s -> {}{}\n",
             st.records_written, st.records_skipped, st.samples_run,
             std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), o.out,
             st.samples_too_long ? fmt::format("; {} samples too long for the window not run (named above)",
                                               st.samples_too_long)
                                 : "");
  return 0;
}

CLI::App* add_report_command(CLI::App& app, ReportCliOptions& o) {
  auto* sub = app.add_subcommand("report", "summarise `kvzip eval` results: a Markdown table per task and method, "
                                           "summary.csv, and PNG plots of score and fidelity against the KV ratio");
  sub->add_option("results", o.results, "results file from kvzip eval")->required();
  sub->add_option("-o,--out-dir", o.out_dir, "directory for report.md, summary.csv and the plots")->capture_default_str();
  sub->add_option("--python", o.python, "Python with matplotlib for the plots (default: the first of $KVZ_PYTHON, "
                                        "~/.cache/kvzip/bench-venv/bin/python, python3 and /usr/bin/python3 that "
                                        "imports it; scripts/setup.sh installs Debian's python3-matplotlib)");
  sub->add_option("--plot-script", o.plot_script,
                  "the plot script (default: plot-report.py beside the kvzip binary, where the build puts it, or "
                  "../share/kvzip/plot-report.py from it, where `cmake --install` puts it)");
  sub->add_flag("--no-plots", o.no_plots, "write only report.md and summary.csv");
  return sub;
}

namespace {

// Runs argv (argv[0] looked up in PATH) and waits. Returns its exit status, 128 + the signal
// that ended it, or -1 with `err` set when it could not be started. quiet: its stdout and
// stderr go to /dev/null.
int run_program(const std::vector<std::string>& argv, bool quiet, std::string& err) {
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  if (quiet) {
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
  }
  pid_t pid = 0;
  const int rc = posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) {
    err = std::strerror(rc);
    return -1;
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) {
      err = std::strerror(errno);
      return -1;
    }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// The directory of the running binary (/proc/self/exe), or empty if unknown.
std::filesystem::path program_dir() {
  std::error_code ec;
  const std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::filesystem::path() : exe.parent_path();
}

// The plot script: --plot-script if given, else beside the binary (the build tree), else
// ../share/kvzip/ from it (an installed tree). Throws, naming the places looked at.
std::string find_plot_script(const std::string& explicit_path) {
  namespace fs = std::filesystem;
  if (!explicit_path.empty()) {
    if (!fs::is_regular_file(explicit_path)) fail("--plot-script {}: no such file", explicit_path);
    return explicit_path;
  }
  const fs::path dir = program_dir();
  if (dir.empty()) fail("cannot locate the kvzip binary (/proc/self/exe) to find plot-report.py; pass --plot-script");
  const fs::path cands[] = {dir / "plot-report.py", dir.parent_path() / "share" / "kvzip" / "plot-report.py"};
  for (const fs::path& c : cands)
    if (fs::is_regular_file(c)) return c.string();
  fail("no plot script: neither {} nor {} exists (the build copies scripts/plot-report.py beside the binary, "
       "`cmake --install` to share/kvzip/); pass --plot-script FILE",
       cands[0].string(), cands[1].string());
}

// The Python for the plots: --python if given, else the first of $KVZ_PYTHON,
// ~/.cache/kvzip/bench-venv/bin/python, python3 (PATH) and /usr/bin/python3 (where Debian's
// python3-matplotlib is, whatever python3 the PATH finds first) that imports matplotlib.
// Throws saying what each candidate lacked.
std::string find_python(const std::string& explicit_python) {
  std::vector<std::string> cands;
  if (!explicit_python.empty()) {
    cands.push_back(explicit_python);
  } else {
    const char* env = std::getenv("KVZ_PYTHON");
    const char* home = std::getenv("HOME");
    if (env && *env) cands.push_back(env);
    const std::string venv = std::string(home ? home : ".") + "/.cache/kvzip/bench-venv/bin/python";
    if (std::filesystem::exists(venv)) cands.push_back(venv);
    cands.push_back("python3");
    cands.push_back("/usr/bin/python3");
  }
  std::string why;
  for (const std::string& py : cands) {
    std::string err;
    const int rc = run_program({py, "-c", "import matplotlib"}, /*quiet=*/true, err);
    if (rc == 0) return py;
    why += fmt::format("{}'{}' {}", why.empty() ? "" : "; ", py,
                       rc < 0 ? "cannot be run: " + err : std::string("cannot import matplotlib"));
  }
  fail("no Python with matplotlib for the plots: {} (scripts/setup.sh installs Debian's python3-matplotlib; "
       "--python PATH names another)", why);
}

// Draws the plots with the script; throws saying why they could not be made.
void make_plots(const ReportCliOptions& o, const std::string& csv_path) {
  const std::string script = find_plot_script(o.plot_script);
  const std::string py = find_python(o.python);
  std::string err;
  const int rc = run_program({py, script, csv_path, o.out_dir}, /*quiet=*/false, err);
  if (rc < 0) fail("cannot run '{}': {}", py, err);
  if (rc != 0) fail("the plot script {} failed (exit {})", script, rc);
}

}  // namespace

// report.md and summary.csv are always written; when the plots cannot be made the command
// says why and fails (exit 1) after them, unless --no-plots asked for none.
int run_report_command(const ReportCliOptions& o) {
  namespace fs = std::filesystem;
  const std::vector<ReportRow> rows = aggregate_results(o.results);
  fs::create_directories(o.out_dir);
  const std::string md_path = (fs::path(o.out_dir) / "report.md").string();
  const std::string csv_path = (fs::path(o.out_dir) / "summary.csv").string();
  write_summary_csv(rows, csv_path);
  const fs::path heads_csv = fs::path(o.out_dir) / "head_kept.csv";
  const bool heads = write_head_kept_csv(rows, heads_csv.string());
  if (!heads) fs::remove(heads_csv);  // an earlier report's, not this one's
  std::string md = report_markdown(rows, fs::path(o.results).filename().string());
  std::string plot_error;
  if (!o.no_plots) {
    try {
      make_plots(o, csv_path);
      md += "\n## Plots\n\n![score vs KV ratio](scores.png)\n\n![mean KL vs KV ratio](fidelity.png)\n\n"
            "![argmax flips vs KV ratio](fidelity_flips.png)\n";
      if (heads)
        md += "\n![kept fraction per layer and KV head](head_kept.png)\n\nWhat each method kept, layer by layer "
              "and head by head (head_kept.csv; at the ratio nearest 0.3, mean over the evaluated samples).\n";
    } catch (const Error& e) {
      plot_error = e.what();
    }
  }
  std::ofstream(md_path) << md;
  fmt::print("wrote {} and {}{} ({} rows)\n", md_path, csv_path, o.no_plots || !plot_error.empty() ? "" : " and the plots",
             rows.size());
  if (!plot_error.empty()) fail("report: no plots: {} (--no-plots writes the report without them)", plot_error);
  return 0;
}

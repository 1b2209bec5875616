// `kvzip eval` and `kvzip report` (tools/cli/eval.cpp), registered by main.cpp.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <string>
#include <vector>

struct EvalCliOptions {
  std::string model;
  std::vector<std::string> tasks, data_files;
  std::string methods = "pair";
  std::string modes = "agnostic";  // comma-separated EvalMode names
  std::string ratios = "1.0,0.9,0.8,0.7,0.6,0.5,0.4,0.3,0.2,0.1";
  int samples = 3;
  uint64_t seed = 1;
  std::string ctx_tokens = "0";  // comma-separated lengths; 0: each task's default
  bool quick = false;
  std::string out = "results.jsonl";
  bool no_fidelity = false;
  std::string head_scores;
  std::string kvzap_dir;
  std::string thresholds;  // --thresholds: adds methods kvzap@TAU
  int64_t kvzap_window = 128;  // --kvzap DIR for method kvzap (default: ~/.cache/kvzip/kvzap/<model>-mlp)
  int threads = 0;
  bool list_tasks = false;
  std::string dump;  // write the samples as JSON lines and exit
};

struct ReportCliOptions {
  std::string results;
  std::string out_dir = "eval-report";
  std::string python;
  std::string plot_script;  // empty: plot-report.py found from the binary's own location
  bool no_plots = false;
};

CLI::App* add_eval_command(CLI::App& app, EvalCliOptions& o);
int run_eval_command(EvalCliOptions o, CLI::App* sub);
CLI::App* add_report_command(CLI::App& app, ReportCliOptions& o);
int run_report_command(const ReportCliOptions& o);

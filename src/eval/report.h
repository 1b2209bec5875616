// `kvzip report`: aggregates the JSON lines of `kvzip eval` per (model, task, method,
// ratio) as the reference does (per-sample score, mean over samples, x100; kvzip-spec
// §6.3), and writes a Markdown report and a CSV the plot script reads.
#pragma once

#include <string>
#include <vector>

namespace kvz {

struct ReportRow {
  std::string model, task, method;
  double ratio = 1;
  int n_samples = 0;
  double score = 0;        // mean sample score, 0-100
  double r_true = 1;       // mean realised kept fraction of context pairs
  double kv_frac = 1;      // mean KV bytes kept / full (sys prompt included)
  double same_as_full = 0; // fraction of answers identical to the full-cache answer
  double mean_abs_dp = 0, max_abs_dp = 0, flip_rate = 0, mean_kl = 0;  // token-weighted
  // [n_layer][n_head_kv] kept fraction of the context per head, mean over the samples whose
  // records carry it (runs before it was recorded: empty).
  std::vector<std::vector<double>> head_kept;
};

// Reads a results file; rows sorted by model, then tasks and methods in order of first
// appearance, then descending ratio.
std::vector<ReportRow> aggregate_results(const std::string& jsonl_path);
std::string report_markdown(const std::vector<ReportRow>& rows, const std::string& source);
void write_summary_csv(const std::vector<ReportRow>& rows, const std::string& path);
// model,task,method,ratio,layer,head,kept for the rows with head_kept; false (and no file)
// when none has it.
bool write_head_kept_csv(const std::vector<ReportRow>& rows, const std::string& path);

}  // namespace kvz

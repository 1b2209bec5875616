#include "eval/report.h"

#include <fmt/format.h>

#include <algorithm>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <tuple>

#include "core/error.h"
#include "io/json_file.h"

namespace kvz {

namespace {

struct Acc {
  int n = 0;
  double score = 0, r_true = 0, kv_frac = 0;
  int64_t answers = 0, same = 0;
  int64_t tokens = 0, flips = 0;
  double sum_abs_dp = 0, max_abs_dp = 0, sum_kl = 0;
  std::vector<std::vector<double>> head_kept;  // summed over n_head_kept records
  int n_head_kept = 0;
};

std::string fmt_ratio(double r) { return fmt::format("{:.2f}", r); }

}  // namespace

std::vector<ReportRow> aggregate_results(const std::string& path) {
  std::ifstream in(path);
  if (!in) fail("{}: cannot open", path);
  std::map<std::tuple<std::string, std::string, std::string, double>, Acc> acc;
  std::map<std::string, int> task_order, method_order;  // first appearance in the file
  // Parsed first, so that a task run at several context lengths (--ctx-tokens A,B) can be
  // reported per length: its rows are labelled "task@A", "task@B".
  std::vector<JsonReader> recs;
  std::map<std::string, std::set<int64_t>> task_lengths;
  constexpr int64_t kMaxLen = std::numeric_limits<int64_t>::max();
  std::string line;
  int bad = 0, lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.empty()) continue;
    try {
      JsonReader j = JsonReader::parse(line, fmt::format("{}:{}", path, lineno));
      task_lengths[j.object().get_str("task")].insert(j.get_int("ctx_target", 0, kMaxLen, 0));
      recs.push_back(std::move(j));
    } catch (const Error&) {
      ++bad;  // an interrupted write or a foreign line
    }
  }
  for (const JsonReader& j : recs) {
    try {
      std::string task = j.get_str("task");
      if (task_lengths[task].size() > 1) task += fmt::format("@{}", j.get_int("ctx_target", 0, kMaxLen, 0));
      const std::string method = j.get_str("method");
      auto& a = acc[{j.get_str("model"), task, method, j.get_number("ratio")}];
      task_order.emplace(task, static_cast<int>(task_order.size()));
      method_order.emplace(method, static_cast<int>(method_order.size()));
      ++a.n;
      a.score += j.get_number("score");
      a.r_true += j.get_number("r_true");
      a.kv_frac += j.get_number("kv_bytes") / std::max(1.0, j.get_number("kv_bytes_full"));
      for (const JsonReader& q : j.at("questions").elements()) {
        ++a.answers;
        a.same += q.object().get_bool("same_as_full", false);
      }
      if (j.object().has("head_kept")) {
        std::vector<std::vector<double>> hk;
        for (const JsonReader& row : j.at("head_kept").elements()) {
          hk.emplace_back();
          for (const JsonReader& x : row.elements()) hk.back().push_back(x.number());
        }
        if (a.n_head_kept == 0) {
          a.head_kept = hk;
          a.n_head_kept = 1;
        } else if (hk.size() == a.head_kept.size() && !hk.empty() && hk[0].size() == a.head_kept[0].size()) {
          for (size_t l = 0; l < hk.size(); ++l)
            for (size_t h = 0; h < hk[l].size() && h < a.head_kept[l].size(); ++h) a.head_kept[l][h] += hk[l][h];
          ++a.n_head_kept;
        }
      }
      const JsonReader f = j.at("fidelity");
      a.tokens += f.get_int("n_tokens", 0, kMaxLen);
      a.flips += f.get_int("flips", 0, kMaxLen);
      a.sum_abs_dp += f.get_number("sum_abs_dp");
      a.sum_kl += f.get_number("sum_kl");
      a.max_abs_dp = std::max(a.max_abs_dp, f.get_number("max_abs_dp"));
    } catch (const Error&) {
      ++bad;
    }
  }
  if (acc.empty()) fail("{}: no eval records ({} unreadable lines)", path, bad);
  std::vector<ReportRow> rows;
  for (const auto& [k, a] : acc) {
    ReportRow r;
    std::tie(r.model, r.task, r.method, r.ratio) = k;
    r.n_samples = a.n;
    r.score = a.score / a.n;
    r.r_true = a.r_true / a.n;
    r.kv_frac = a.kv_frac / a.n;
    r.same_as_full = a.answers ? static_cast<double>(a.same) / a.answers : 0;
    r.mean_abs_dp = a.tokens ? a.sum_abs_dp / a.tokens : 0;
    r.max_abs_dp = a.max_abs_dp;
    r.flip_rate = a.tokens ? static_cast<double>(a.flips) / a.tokens : 0;
    r.mean_kl = a.tokens ? a.sum_kl / a.tokens : 0;
    r.head_kept = a.head_kept;
    for (auto& row : r.head_kept)
      for (double& x : row) x /= a.n_head_kept;
    rows.push_back(r);
  }
  std::sort(rows.begin(), rows.end(), [&](const ReportRow& a, const ReportRow& b) {
    return std::make_tuple(a.model, task_order[a.task], method_order[a.method], b.ratio) <
           std::make_tuple(b.model, task_order[b.task], method_order[b.method], a.ratio);
  });
  return rows;
}

std::string report_markdown(const std::vector<ReportRow>& rows, const std::string& source) {
  std::string md = fmt::format("# KV-cache compression evaluation\n\nFrom `{}`. Scores are per-sample means over the "
                               "sample's questions, averaged over samples, x100 (kvzip-spec §6.3). Ratio = kept "
                               "fraction of the context's KV pairs; 1.00 is the full cache.\n",
                               source);
  std::set<std::string> models;
  for (const auto& r : rows) models.insert(r.model);
  for (const auto& model : models) {
    md += fmt::format("\n## {}\n", model);
    std::vector<std::string> tasks, methods;
    std::set<double, std::greater<>> ratios;
    for (const auto& r : rows)
      if (r.model == model) {
        if (std::find(tasks.begin(), tasks.end(), r.task) == tasks.end()) tasks.push_back(r.task);
        if (std::find(methods.begin(), methods.end(), r.method) == methods.end()) methods.push_back(r.method);
        ratios.insert(r.ratio);
      }
    auto find = [&](const std::string& t, const std::string& m, double ratio) -> const ReportRow* {
      for (const auto& r : rows)
        if (r.model == model && r.task == t && r.method == m && r.ratio == ratio) return &r;
      return nullptr;
    };
    auto header = [&](const char* first) {
      std::string h = fmt::format("| {} |", first), sep = "|---|";
      for (double r : ratios) {
        h += fmt::format(" {} |", fmt_ratio(r));
        sep += "---:|";
      }
      return h + "\n" + sep + "\n";
    };
    // Overview: the mean over tasks of each method.
    md += "\n### Mean score over tasks\n\n" + header("method");
    for (const auto& m : methods) {
      md += "| " + m + " |";
      for (double ratio : ratios) {
        double s = 0;
        int n = 0;
        for (const auto& t : tasks)
          if (const ReportRow* r = find(t, m, ratio)) s += r->score, ++n;
        md += n ? fmt::format(" {:.1f} |", s / n) : " |";
      }
      md += "\n";
    }
    // What each requested ratio really kept: r_true over the context pairs, and the KV
    // bytes kept including the never-evicted system prompt.
    md += "\n### Realised kept fraction: r_true of the context pairs / KV bytes kept (system prompt included)\n\n" +
          header("method");
    for (const auto& m : methods) {
      md += "| " + m + " |";
      for (double ratio : ratios) {
        double rt = 0, kv = 0;
        int n = 0;
        for (const auto& t : tasks)
          if (const ReportRow* r = find(t, m, ratio)) rt += r->r_true, kv += r->kv_frac, ++n;
        md += n ? fmt::format(" {:.3f} / {:.3f} |", rt / n, kv / n) : " |";
      }
      md += "\n";
    }
    // The compression-quality curve in one table: every (method, ratio) point as the mean
    // over tasks of what it kept and how close its answers stayed. A threshold method's
    // points are its thresholds, whatever nominal ratio they were recorded under.
    md += "\n### Kept against quality, mean over tasks\n\n"
          "| method | ratio | kept (r_true) | KV bytes kept | score | mean KL (nats/token) | answers = full | tasks |\n"
          "|---|---:|---:|---:|---:|---:|---:|---:|\n";
    for (const auto& m : methods)
      for (double ratio : ratios) {
        double rt = 0, kv = 0, sc = 0, kl = 0, same = 0;
        int n = 0;
        for (const auto& t : tasks)
          if (const ReportRow* r = find(t, m, ratio))
            rt += r->r_true, kv += r->kv_frac, sc += r->score, kl += r->mean_kl, same += r->same_as_full, ++n;
        if (n)
          md += fmt::format("| {} | {} | {:.3f} | {:.3f} | {:.1f} | {:.4f} | {:.2f} | {} |\n", m, fmt_ratio(ratio),
                            rt / n, kv / n, sc / n, kl / n, same / n, n);
      }
    for (const auto& t : tasks) {
      md += fmt::format("\n### {}\n\nScore (samples: ", t);
      int n = 0;
      for (const auto& r : rows)
        if (r.model == model && r.task == t) n = std::max(n, r.n_samples);
      md += fmt::format("{})\n\n", n) + header("method");
      for (const auto& m : methods) {
        md += "| " + m + " |";
        for (double ratio : ratios) {
          const ReportRow* r = find(t, m, ratio);
          md += r ? fmt::format(" {:.1f} |", r->score) : " |";
        }
        md += "\n";
      }
      md += "\nFidelity to the full cache: mean KL(full || compressed) per answer token (nats) / argmax flip "
            "rate / answers identical to the full cache\n\n" +
            header("method");
      for (const auto& m : methods) {
        md += "| " + m + " |";
        for (double ratio : ratios) {
          const ReportRow* r = find(t, m, ratio);
          md += r ? fmt::format(" {:.3f} / {:.2f} / {:.2f} |", r->mean_kl, r->flip_rate, r->same_as_full) : " |";
        }
        md += "\n";
      }
    }
  }
  return md;
}

void write_summary_csv(const std::vector<ReportRow>& rows, const std::string& path) {
  std::ofstream o(path);
  if (!o) fail("{}: cannot write", path);
  o << "model,task,method,ratio,n_samples,score,r_true,kv_frac,same_as_full,mean_abs_dp,max_abs_dp,flip_rate,mean_kl\n";
  for (const auto& r : rows)
    o << fmt::format("{},{},{},{:.4f},{},{:.4f},{:.6f},{:.6f},{:.4f},{:.6f},{:.6f},{:.6f},{:.6f}\n", r.model, r.task,
                     r.method, r.ratio, r.n_samples, r.score, r.r_true, r.kv_frac, r.same_as_full, r.mean_abs_dp,
                     r.max_abs_dp, r.flip_rate, r.mean_kl);
}

bool write_head_kept_csv(const std::vector<ReportRow>& rows, const std::string& path) {
  bool any = false;
  for (const auto& r : rows) any = any || !r.head_kept.empty();
  if (!any) return false;
  std::ofstream o(path);
  if (!o) fail("{}: cannot write", path);
  o << "model,task,method,ratio,layer,head,kept\n";
  for (const auto& r : rows)
    for (size_t l = 0; l < r.head_kept.size(); ++l)
      for (size_t h = 0; h < r.head_kept[l].size(); ++h)
        o << fmt::format("{},{},{},{:.4f},{},{},{:.4f}\n", r.model, r.task, r.method, r.ratio, l, h, r.head_kept[l][h]);
  return true;
}

}  // namespace kvz

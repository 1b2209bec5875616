#include "eval/metrics.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "core/error.h"

namespace kvz {

namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

std::string_view strip(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && is_space(s[b])) ++b;
  while (e > b && is_space(s[e - 1])) --e;
  return s.substr(b, e - b);
}

// Python's str.split(): runs of whitespace separate, no empty items.
std::vector<std::string> split_ws(std::string_view s) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && is_space(s[i])) ++i;
    size_t j = i;
    while (j < s.size() && !is_space(s[j])) ++j;
    if (j > i) out.emplace_back(s.substr(i, j - i));
    i = j;
  }
  return out;
}

// Python's str.split(sep) with a non-empty separator: keeps empty items.
std::vector<std::string> split_on(std::string_view s, std::string_view sep) {
  std::vector<std::string> out;
  size_t i = 0;
  for (;;) {
    const size_t j = s.find(sep, i);
    if (j == std::string_view::npos) {
      out.emplace_back(s.substr(i));
      return out;
    }
    out.emplace_back(s.substr(i, j - i));
    i = j + sep.size();
  }
}

bool contains(std::string_view hay, std::string_view needle) { return hay.find(needle) != std::string_view::npos; }

bool is_ascii_punct(char c) {
  const unsigned char u = static_cast<unsigned char>(c);
  return (u >= 33 && u <= 47) || (u >= 58 && u <= 64) || (u >= 91 && u <= 96) || (u >= 123 && u <= 126);
}

// The reference strips a trailing "</s>" before scoring.
std::string_view drop_eos_text(std::string_view s) {
  constexpr std::string_view kEos = "</s>";
  if (s.size() >= kEos.size() && s.substr(s.size() - kEos.size()) == kEos) s.remove_suffix(kEos.size());
  return s;
}

// Text inside the first "(...)"; the rest of the string when ')' is missing.
std::string first_paren(std::string_view s) {
  const size_t b = s.find('(');
  if (b == std::string_view::npos) return "";
  const size_t e = s.find(')', b + 1);
  return std::string(strip(s.substr(b + 1, e == std::string_view::npos ? std::string_view::npos : e - b - 1)));
}

// nltk's modified n-gram precision for one reference: clipped matches / max(1, hyp n-grams).
std::pair<int64_t, int64_t> modified_precision(const std::vector<std::string>& ref, const std::vector<std::string>& hyp,
                                               size_t n) {
  std::map<std::vector<std::string>, int64_t> hc, rc;
  for (size_t i = 0; i + n <= hyp.size(); ++i) ++hc[std::vector<std::string>(hyp.begin() + i, hyp.begin() + i + n)];
  for (size_t i = 0; i + n <= ref.size(); ++i) ++rc[std::vector<std::string>(ref.begin() + i, ref.begin() + i + n)];
  int64_t num = 0, den = 0;
  for (const auto& [g, c] : hc) {
    den += c;
    auto it = rc.find(g);
    if (it != rc.end()) num += std::min(c, it->second);
  }
  return {num, std::max<int64_t>(1, den)};
}

// Words of a "sentence" as the rouge package sees them: " ".join(s.split()).split(" "),
// so an all-whitespace sentence is one empty word.
std::vector<std::string> rouge_words(const std::string& sentence) {
  std::vector<std::string> w = split_ws(sentence);
  if (w.empty()) w.emplace_back();
  return w;
}

// The rouge package's sentences: split on '.', keep pieces of non-zero length.
std::vector<std::vector<std::string>> rouge_sentences(std::string_view text) {
  std::vector<std::vector<std::string>> out;
  for (const std::string& piece : split_on(text, "."))
    if (!piece.empty()) out.push_back(rouge_words(piece));
  return out;
}

// Words of one LCS of x and y, reconstructed the way rouge_score._recon_lcs walks the table
// (up when table[i-1][j] > table[i][j-1], else left).
std::vector<std::string> lcs_words(const std::vector<std::string>& x, const std::vector<std::string>& y) {
  const size_t n = x.size(), m = y.size();
  std::vector<std::vector<int>> t(n + 1, std::vector<int>(m + 1, 0));
  for (size_t i = 1; i <= n; ++i)
    for (size_t j = 1; j <= m; ++j)
      t[i][j] = x[i - 1] == y[j - 1] ? t[i - 1][j - 1] + 1 : std::max(t[i - 1][j], t[i][j - 1]);
  std::vector<std::string> out;
  size_t i = n, j = m;
  while (i > 0 && j > 0) {
    if (x[i - 1] == y[j - 1]) {
      out.push_back(x[i - 1]);
      --i;
      --j;
    } else if (t[i - 1][j] > t[i][j - 1]) {
      --i;
    } else {
      --j;
    }
  }
  std::reverse(out.begin(), out.end());
  return out;
}

}  // namespace

std::string normalize_answer(std::string_view s) {
  std::string t;
  t.reserve(s.size());
  for (char c : s) {
    if (is_ascii_punct(c)) continue;
    t += (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
  }
  static const char* kDigits[] = {"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"};
  std::string out;
  for (const std::string& w : split_ws(t)) {
    if (w == "a" || w == "an" || w == "the") continue;
    std::string v = w;
    for (int d = 0; d < 10; ++d)
      if (w == kDigits[d]) v = std::string(1, static_cast<char>('0' + d));
    if (!out.empty()) out += ' ';
    out += v;
  }
  return out;
}

double answer_inclusion(std::string_view pred, std::string_view ref) {
  return contains(normalize_answer(pred), normalize_answer(ref)) ? 1.0 : 0.0;
}

double token_f1(std::string_view pred, std::string_view ref) {
  const std::vector<std::string> p = split_ws(normalize_answer(pred)), r = split_ws(normalize_answer(ref));
  std::map<std::string, int> cp, cr;
  for (const auto& w : p) ++cp[w];
  for (const auto& w : r) ++cr[w];
  int same = 0;
  for (const auto& [w, c] : cp) {
    auto it = cr.find(w);
    if (it != cr.end()) same += std::min(c, it->second);
  }
  if (same == 0) return 0.0;
  const double prec = static_cast<double>(same) / p.size(), rec = static_cast<double>(same) / r.size();
  return 2 * prec * rec / (prec + rec);
}

double exact_match(std::string_view pred, std::string_view ref) { return pred == ref ? 1.0 : 0.0; }

double substring_fraction(std::string_view pred, std::string_view ref) {
  const std::vector<std::string> items = split_on(ref, ", ");
  int hit = 0;
  for (const auto& it : items) hit += contains(pred, it);
  return static_cast<double>(hit) / items.size();
}

double rouge_l(std::string_view pred, std::string_view ref) {
  const auto hyp = rouge_sentences(pred), refs = rouge_sentences(ref);
  if (hyp.empty() || refs.empty()) return 0.0;  // the package raises; the reference scores 0
  std::set<std::string> hyp_words, ref_words, uni;
  for (const auto& s : hyp) hyp_words.insert(s.begin(), s.end());
  for (const auto& s : refs) ref_words.insert(s.begin(), s.end());
  for (const auto& r : refs)
    for (const auto& h : hyp)
      for (auto& w : lcs_words(r, h)) uni.insert(std::move(w));
  const double llcs = static_cast<double>(uni.size());
  const double rec = llcs / ref_words.size(), prec = llcs / hyp_words.size();
  return 2.0 * (prec * rec / (prec + rec + 1e-8));
}

double gsm_answer(std::string_view pred, std::string_view ref) {
  std::string p(strip(pred));
  for (char& c : p)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  const std::string after = split_on(p, "the answer is ").back();
  const std::string want = split_on(ref, "#### ").back();
  return contains(after, want) ? 1.0 : 0.0;
}

double many_shot(std::string_view pred, std::string_view ref) {
  if (contains(pred, "(") && contains(ref, "(")) return first_paren(pred) == first_paren(ref) ? 1.0 : 0.0;
  std::string r(ref);
  const size_t b = r.find('(');
  if (b != std::string::npos) {
    const size_t e = r.find(')', b);
    r.erase(b, e == std::string::npos ? std::string::npos : e - b + 1);
  }
  return answer_inclusion(pred, r);
}

double first_line_inclusion(std::string_view pred, std::string_view ref) {
  const std::string_view p = strip(pred);
  return answer_inclusion(p.substr(0, p.find('\n')), ref);
}

double sentence_bleu(std::string_view hyp_text, std::string_view ref_text) {
  const std::vector<std::string> hyp = split_ws(hyp_text), ref = split_ws(ref_text);
  const size_t hyp_len = hyp.size(), ref_len = ref.size();
  if (hyp_len == 0) return 0.0;
  double p[4];
  int64_t num[4], den[4];
  for (size_t n = 1; n <= 4; ++n) std::tie(num[n - 1], den[n - 1]) = modified_precision(ref, hyp, n);
  if (num[0] == 0) return 0.0;
  // method4: the i-th zero precision (i = 1, 2, ...) becomes 1 / (2^i * k / ln(hyp_len)) / den, k = 5;
  // with hyp_len 1 zeros stay zero and drop out of the sum.
  int incvnt = 1;
  for (int i = 0; i < 4; ++i) {
    p[i] = static_cast<double>(num[i]) / static_cast<double>(den[i]);
    if (num[i] == 0 && hyp_len > 1) {
      p[i] = 1.0 / (std::pow(2.0, incvnt) * 5.0 / std::log(static_cast<double>(hyp_len))) / static_cast<double>(den[i]);
      ++incvnt;
    }
  }
  double s = 0;
  for (double pi : p)
    if (pi > 0) s += 0.25 * std::log(pi);
  const double bp = hyp_len > ref_len ? 1.0 : std::exp(1.0 - static_cast<double>(ref_len) / hyp_len);
  return bp * std::exp(s);
}

std::string extract_code_block(std::string_view pred) {
  const size_t open = pred.find("```");
  if (open == std::string_view::npos) return std::string(pred);
  size_t body = pred.find('\n', open + 3);
  if (body == std::string_view::npos) return "";
  ++body;
  const size_t close = pred.find("```", body);
  return std::string(pred.substr(body, close == std::string_view::npos ? std::string_view::npos : close - body));
}

double repoqa_pass(std::string_view pred, std::string_view ref, const std::vector<std::string>& needles,
                   double threshold) {
  const std::string code = extract_code_block(pred);
  double best = -1;
  size_t best_i = 0;
  for (size_t i = 0; i < needles.size(); ++i) {
    const double b = sentence_bleu(code, needles[i]);
    if (b > best) best = b, best_i = i;
  }
  if (needles.empty()) return sentence_bleu(code, ref) >= threshold ? 1.0 : 0.0;
  return needles[best_i] == ref && best >= threshold ? 1.0 : 0.0;
}

bool is_metric(const std::string& name) {
  return std::find(std::begin(kMetricNames), std::end(kMetricNames), name) != std::end(kMetricNames);
}

std::optional<double> score_answer(const std::string& metric, std::string_view pred_in, std::string_view ref,
                                   const std::vector<std::string>& needles) {
  const std::string_view pred = drop_eos_text(pred_in);
  if (strip(pred).empty()) {
    if (metric == "repoqa") return std::nullopt;
    return 0.0;
  }
  if (metric == "inclusion") return answer_inclusion(pred, ref);
  if (metric == "f1_or_inclusion") return std::max(token_f1(pred, ref), answer_inclusion(pred, ref));
  if (metric == "exact") return exact_match(pred, ref);
  if (metric == "substring_fraction") return substring_fraction(pred, ref);
  if (metric == "rouge_l") return rouge_l(pred, ref);
  if (metric == "gsm") return gsm_answer(pred, ref);
  if (metric == "many_shot") return many_shot(pred, ref);
  if (metric == "first_line") return first_line_inclusion(pred, ref);
  if (metric == "repoqa") return repoqa_pass(pred, ref, needles);
  fail("unknown metric '{}' (known: inclusion, f1_or_inclusion, exact, substring_fraction, rouge_l, gsm, many_shot, "
       "first_line, repoqa)",
       metric);
}

double mean_present(const std::vector<std::optional<double>>& v) {
  double s = 0;
  int n = 0;
  for (const auto& x : v)
    if (x) s += *x, ++n;
  return n ? s / n : 0.0;
}

}  // namespace kvz

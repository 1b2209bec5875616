#include "eval/compose_eval.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <set>

#include "core/error.h"
#include "eval/metrics.h"
#include "eval/tasks/gen_util.h"
#include "kv/compose.h"
#include "kv/kvzip_context.h"

namespace kvz {

namespace {

const std::vector<std::string> kSurnames = {"Ashdown", "Blackwood", "Carrow",   "Delacourt", "Everly",  "Fairbairn",
                                            "Hartigan", "Inchbald", "Jessop",   "Kettleby",  "Lowther", "Northcott",
                                            "Oakley",  "Quayle",    "Rathbone", "Sallow",    "Tennant", "Underhill"};
const std::vector<std::string> kTrades = {"bridge engineer", "violin maker", "botanist",   "ship's navigator",
                                          "potter",          "clock repairer", "beekeeper", "bookbinder",
                                          "glassblower",     "surveyor",     "cheesemaker", "lighthouse keeper"};

struct Person {
  std::string name, city, trade;
  int year = 0;
  int doc = 0;
};

double secs_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

MultiDocSample make_multidoc_sample(uint64_t seed, int n_docs, int64_t doc_tokens_min, int64_t doc_tokens_max,
                                    const std::function<int64_t(const std::string&)>& count) {
  if (n_docs < 2) fail("a multi-document sample needs at least 2 documents, not {}", n_docs);
  if (doc_tokens_min < 100 || doc_tokens_max < doc_tokens_min)
    fail("document length {}..{} tokens: give 100 <= min <= max", doc_tokens_min, doc_tokens_max);
  Rng r(seed);
  std::set<std::string> used;
  std::vector<std::vector<Person>> people(n_docs);
  MultiDocSample s;
  for (int d = 0; d < n_docs; ++d) {
    const int64_t target = r.range(static_cast<int>(doc_tokens_min), static_cast<int>(doc_tokens_max));
    std::string text = fmt::format("Register of Notable People, volume {}\n\n", d + 1);
    int64_t n = count(text);
    while (n < target || people[d].size() < 2) {
      Person p{r.pick(first_names()) + " " + r.pick(kSurnames), r.pick(city_names()), r.pick(kTrades),
               r.range(1890, 1990), d};
      if (!used.insert(p.name).second) continue;
      std::string par = fmt::format("{0} was born in {1} in {2} and worked for many years as a {3}. ", p.name, p.city,
                                    p.year, p.trade);
      for (const auto& f : filler_sentences(r, 80, count)) par += f;
      while (!par.empty() && (par.back() == ' ' || par.back() == '\n')) par.pop_back();
      par += "\n\n";
      n += count(par);
      text += par;
      people[d].push_back(std::move(p));
    }
    s.docs.push_back(std::move(text));
  }
  // One question per document about one of its people; then two-document questions over
  // pairs (d, d + 1 + j mod n), each asking for both people's birth towns.
  for (int d = 0; d < n_docs; ++d) {
    const Person& p = r.pick(people[d]);
    if (r.below(2) == 0)
      s.questions.push_back({"In which town was " + p.name + " born?", p.city, {d}});
    else
      s.questions.push_back({"What was the trade of " + p.name + "?", p.trade, {d}});
  }
  for (int d = 0; d < n_docs; ++d) {
    const int e = (d + 1 + static_cast<int>(r.below(static_cast<uint64_t>(n_docs - 1)))) % n_docs;
    const Person* a = &r.pick(people[d]);
    const Person* b = nullptr;
    for (int tries = 0; tries < 50 && !b; ++tries) {
      const Person& c = r.pick(people[e]);
      if (c.city != a->city) b = &c;
    }
    if (!b) continue;  // every person of e born in a's town: skip the pair
    if (r.below(2) == 0) std::swap(a, b);
    s.questions.push_back({"In which towns were " + a->name + " and " + b->name + " born?", a->city + ", " + b->city,
                           {a->doc, b->doc}});
  }
  return s;
}

ComposeEvalResult run_compose_eval(const Model& m, ThreadPool& pool, const ComposeEvalOptions& o) {
  if (o.ratios.empty()) fail("compose eval: give at least one ratio");
  for (double x : o.ratios)
    if (!(x > 0 && x <= 1)) fail("compose eval: ratio {} is not in (0, 1]", x);
  auto log = [&](const std::string& s) {
    if (o.log) o.log(s);
  };
  const Tokenizer& tok = m.tokenizer();
  auto count = [&](const std::string& s) { return static_cast<int64_t>(tok.encode(s, false).size()); };
  const int n_vocab = m.hp().n_vocab;

  ComposeEvalResult res;
  auto add_config = [&](std::string name, double ratio) {
    res.configs.emplace_back();
    res.configs.back().name = std::move(name);
    res.configs.back().ratio = ratio;
  };
  add_config("joint (ideal)", 1.0);
  add_config("composed, full", 1.0);
  for (double x : o.ratios) add_config(fmt::format("composed, ratio {:g}", x), x);
  res.answers.resize(res.configs.size());
  GenerateParams gp;
  gp.n_predict = o.max_new_tokens;

  for (size_t si = 0; si < o.n_docs.size(); ++si) {
    const MultiDocSample s =
        make_multidoc_sample(sample_seed(o.seed, "multidoc", static_cast<int>(si)), o.n_docs[si], o.doc_tokens_min,
                             o.doc_tokens_max, count);
    std::vector<std::vector<int32_t>> ids;
    std::vector<int32_t> all;
    for (const auto& d : s.docs) {
      ids.push_back(tok.encode(d, false));
      all.insert(all.end(), ids.back().begin(), ids.back().end());
    }
    res.n_doc_tokens += static_cast<int64_t>(all.size());
    res.n_docs_total += static_cast<int>(s.docs.size());
    ++res.n_samples;
    log(fmt::format("sample {}: {} documents, {} tokens, {} questions", si + 1, s.docs.size(), all.size(),
                    s.questions.size()));

    // (a) joint: the reference answers and their teacher-forced distributions.
    ContextOptions co;
    auto t0 = std::chrono::steady_clock::now();
    KvzipContext joint(m, pool, co);
    joint.prefill_ids(all);
    res.joint_prefill_s += secs_since(t0);
    std::vector<std::vector<int32_t>> targets(s.questions.size());
    std::vector<std::vector<float>> ref_lp(s.questions.size());
    // Answers one configuration's questions; fid against the joint distributions.
    auto answer_all = [&](KvzipContext& ctx, size_t ci, bool is_joint) {
      ComposeConfigResult& c = res.configs[ci];
      c.kv_bytes += static_cast<int64_t>(ctx.kv_bytes());
      for (size_t q = 0; q < s.questions.size(); ++q) {
        const auto& qq = s.questions[q];
        const QueryResult r = ctx.query(qq.text, gp, false);
        if (is_joint) {
          targets[q] = r.answer_ids;
          if (r.end_id >= 0) targets[q].push_back(r.end_id);
          ref_lp[q] = ctx.answer_logprobs(qq.text, targets[q]);
          res.questions.push_back(qq.text);
          res.references.push_back(qq.answer);
        } else if (!targets[q].empty()) {
          c.fid.push_back(compare_logprobs(ref_lp[q], ctx.answer_logprobs(qq.text, targets[q]), targets[q], n_vocab));
        } else {
          c.fid.push_back({});
        }
        c.scores.push_back(
            score_answer(qq.docs.size() > 1 ? "substring_fraction" : "inclusion", r.answer, qq.answer).value_or(0.0));
        c.n_needed.push_back(static_cast<int>(qq.docs.size()));
        res.answers[ci].push_back(r.answer);
      }
    };
    answer_all(joint, 0, true);

    // Each document alone, scored once (retain_full: pruned to every ratio from the full cache).
    ContextOptions sep_o;
    sep_o.retain_full = true;
    std::vector<std::unique_ptr<KvzipContext>> parts;
    for (size_t d = 0; d < ids.size(); ++d) {
      parts.push_back(std::make_unique<KvzipContext>(m, pool, sep_o));
      t0 = std::chrono::steady_clock::now();
      parts.back()->prefill_ids(ids[d]);
      res.separate_prefill_s += secs_since(t0);
      t0 = std::chrono::steady_clock::now();
      parts.back()->score();
      res.scoring_s += secs_since(t0);
    }
    auto compose_now = [&](size_t ci) {
      std::vector<StoredContext> metas;
      std::vector<ComposePart> ps;
      for (auto& p : parts) metas.push_back(p->stored());
      for (size_t d = 0; d < parts.size(); ++d)
        ps.push_back({&metas[d], &parts[d]->session().cache(), fmt::format("document {}", d + 1)});
      t0 = std::chrono::steady_clock::now();
      ComposedContext cc = compose_contexts(m, ps, KvType::F16);
      res.compose_s += secs_since(t0);
      KvzipContext ctx(m, pool, co);
      ctx.assign(std::move(cc.meta), std::move(cc.cache), "the composed documents");
      answer_all(ctx, ci, false);
    };
    compose_now(1);  // full caches
    for (size_t k = 0; k < o.ratios.size(); ++k) {
      SelectOptions so;
      so.ratio = o.ratios[k];
      for (auto& p : parts) p->prune(so);
      compose_now(2 + k);
      log(fmt::format("  ratio {:g}: mean score {:.3f}", o.ratios[k], [&] {
        const auto& v = res.configs[2 + k].scores;
        double t = 0;
        for (size_t i = v.size() - s.questions.size(); i < v.size(); ++i) t += v[i];
        return t / static_cast<double>(s.questions.size());
      }()));
    }
  }
  return res;
}

std::string compose_eval_markdown(const ComposeEvalResult& r, const std::string& header) {
  std::string md = header;
  md += fmt::format(
      "\n{} samples, {} documents in all ({} document tokens), {} questions ({} need one document, {} need "
      "two).\n\n",
      r.n_samples, r.n_docs_total, r.n_doc_tokens, r.questions.size(),
      std::count(r.configs[0].n_needed.begin(), r.configs[0].n_needed.end(), 1),
      std::count(r.configs[0].n_needed.begin(), r.configs[0].n_needed.end(), 2));
  md += "| cache | score, one-document questions | score, two-document questions | mean KL vs joint (nats/token) "
        "| argmax flips vs joint | KV cache (sum over samples) |\n|---|---|---|---|---|---|\n";
  for (const auto& c : r.configs) {
    double s1 = 0, s2 = 0;
    int n1 = 0, n2 = 0;
    for (size_t q = 0; q < c.scores.size(); ++q) {
      if (c.n_needed[q] == 1) {
        s1 += c.scores[q];
        ++n1;
      } else {
        s2 += c.scores[q];
        ++n2;
      }
    }
    Fidelity f;
    for (const auto& x : c.fid) f.add(x);
    md += fmt::format("| {} | {:.3f} | {:.3f} | {} | {} | {:.1f} MiB |\n", c.name, n1 ? s1 / n1 : 0.0,
                      n2 ? s2 / n2 : 0.0, c.fid.empty() ? "—" : fmt::format("{:.4f}", f.mean_kl()),
                      c.fid.empty() ? "—" : fmt::format("{:.1f}%", 100.0 * f.flip_rate()),
                      static_cast<double>(c.kv_bytes) / (1 << 20));
  }
  md += fmt::format(
      "\nTime, summed over samples: joint prefill {:.1f} s; the documents prefilled one by one {:.1f} s, their "
      "KVzip scoring {:.1f} s (paid once per document, stored); composing {:.2f} s over {} compositions.\n",
      r.joint_prefill_s, r.separate_prefill_s, r.scoring_s, r.compose_s, (r.configs.size() - 1) * r.n_samples);
  return md;
}

}  // namespace kvz

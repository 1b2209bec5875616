// Summary with needles (SCBench summary_with_needles): a chronicle of events, each
// paragraph led by one event sentence, with a few "secret word" facts hidden in it. One
// question asks for a summary (ROUGE-L against the event sentences), the others for the
// hidden facts (inclusion).
#include "eval/tasks/registry.h"

#include <fmt/format.h>

namespace kvz {

namespace {
const std::vector<std::string> kEvents = {
    "opened a new harbour for fishing boats", "built a stone bridge over the river",
    "held its first summer music festival", "planted an orchard of pear trees", "repaired the old town hall",
    "started a weekly grain market", "dug a canal to the salt flats", "founded a school for young sailors",
    "raised a lighthouse on the northern cliffs", "paved the road to the quarry", "built a covered market hall",
    "opened a library in the former mill"};
const std::vector<std::string> kWords = {"amber", "juniper", "falcon", "harbor", "meadow", "copper",
                                         "saffron", "thistle", "lantern", "orchid", "granite", "willow"};
}  // namespace

EvalSample make_summary_needles(int index, const TaskParams& p) {
  Rng r(sample_seed(p.seed, p.easy ? "summary-needles-easy" : "summary-needles", index));
  std::vector<std::string> events = kEvents, cities = city_names();
  r.shuffle(events);
  r.shuffle(cities);
  const int n_par = p.easy ? 4 : 6;
  const int64_t per_par = std::max<int64_t>(20, p.ctx_tokens / n_par - 20);
  std::vector<std::string> leads;
  std::string ctx = "A chronicle of the coast\n\n";
  struct Needle {
    std::string city, word;
  };
  std::vector<Needle> needles;
  int year = r.range(1700, 1800);
  for (int k = 0; k < n_par; ++k) {
    year += r.range(3, 12);
    const std::string lead = fmt::format("In {}, the town of {} {}.", year, cities[k], events[k]);
    leads.push_back(lead);
    std::string par = lead + " ";
    auto filler = filler_sentences(r, per_par, p.count);
    if (k % 2 == 1) {  // a needle in every other paragraph, in its middle
      Needle nd{cities[n_par + k], r.pick(kWords)};
      filler.insert(filler.begin() + static_cast<long>(filler.size() / 2),
                    fmt::format("The secret word of {} is {}. ", nd.city, nd.word));
      needles.push_back(nd);
    }
    for (const auto& f : filler) par += f;
    while (!par.empty() && (par.back() == ' ' || par.back() == '\n')) par.pop_back();
    ctx += par + "\n\n";
  }
  while (!ctx.empty() && ctx.back() == '\n') ctx.pop_back();
  EvalSample s;
  s.context = ctx;
  s.questions.push_back("Summarize the chronicle in a few sentences: what happened in which town and year?");
  std::string summary;
  for (const auto& l : leads) summary += (summary.empty() ? "" : " ") + l;
  s.answers.push_back(summary);
  s.metrics.push_back("rouge_l");
  for (size_t k = 0; k < std::min<size_t>(2, needles.size()); ++k) {
    s.questions.push_back("What is the secret word of " + needles[k].city + "?");
    s.answers.push_back(needles[k].word);
    s.metrics.push_back("inclusion");
  }
  s.max_new_tokens = 96;
  s.info = fmt::format("paragraphs={} needles={}", n_par, needles.size());
  return s;
}

}  // namespace kvz

// SQuAD-style reading comprehension: one generated document of biographical facts about
// fictional people, separated by filler prose, and several questions whose answers are
// short spans of it (inclusion metric, as the reference scores squad).
#include "eval/tasks/registry.h"

#include <fmt/format.h>

#include <set>

namespace kvz {

namespace {
const std::vector<std::string> kSurnames = {"Ashdown", "Blackwood", "Carrow", "Delacourt", "Everly", "Fairbairn",
                                            "Gallowglass", "Hartigan", "Inchbald", "Jessop", "Kettleby", "Lowther",
                                            "Merriweather", "Northcott", "Oakley", "Pennington", "Quayle", "Rathbone"};
const std::vector<std::string> kJobs = {"bridge engineer", "violin maker", "botanist", "ship's navigator", "potter",
                                        "clock repairer", "beekeeper", "bookbinder", "glassblower", "surveyor",
                                        "cheesemaker", "lighthouse keeper", "stonemason", "puppeteer"};
const std::vector<std::string> kColors = {"red", "blue", "green", "yellow", "white", "black", "orange", "purple"};
}  // namespace

EvalSample make_fact_qa(int index, const TaskParams& p) {
  Rng r(sample_seed(p.seed, p.easy ? "squad-easy" : "squad", index));
  struct Person {
    std::string name, city, job, object, color;
    int year;
  };
  std::vector<Person> people;
  std::set<std::string> names;
  std::vector<std::string> paragraphs;
  int64_t n = 0;
  const int64_t per_person_filler = p.easy ? 0 : 60;
  while (n < p.ctx_tokens || people.size() < 3) {
    Person q{r.pick(first_names()) + " " + r.pick(kSurnames), r.pick(city_names()), r.pick(kJobs),
             r.pick(object_nouns()), r.pick(kColors), r.range(1890, 1990)};
    if (!names.insert(q.name).second) continue;  // 500 name pairs; a document holds far fewer people
    std::string par = fmt::format(
        "{0} was born in {1} in {2}. After years of training, {0} became a {3}, and people across the region "
        "knew the work well. {0} always carried a {4} {5}, which had been a gift from an old teacher. ",
        q.name, q.city, q.year, q.job, q.color, q.object);
    if (per_person_filler > 0)
      for (const auto& f : filler_sentences(r, per_person_filler, p.count)) par += f;
    while (!par.empty() && (par.back() == ' ' || par.back() == '\n')) par.pop_back();
    par += "\n\n";
    n += count_tokens(p, par);
    paragraphs.push_back(std::move(par));
    people.push_back(std::move(q));
  }
  EvalSample s;
  s.context = "A Register of Notable People\n\n";
  for (const auto& par : paragraphs) s.context += par;
  while (!s.context.empty() && s.context.back() == '\n') s.context.pop_back();
  const int nq = 4;
  for (int k = 0; k < nq; ++k) {
    const size_t lo = people.size() * k / nq, hi = std::max(lo + 1, people.size() * (k + 1) / nq);
    const Person& q = people[lo + r.below(hi - lo)];
    switch (k % 4) {
      case 0:
        s.questions.push_back("In which town was " + q.name + " born?");
        s.answers.push_back(q.city);
        break;
      case 1:
        s.questions.push_back("What was the job of " + q.name + "?");
        s.answers.push_back(q.job);
        break;
      case 2:
        s.questions.push_back("In which year was " + q.name + " born?");
        s.answers.push_back(std::to_string(q.year));
        break;
      default:
        s.questions.push_back("What did " + q.name + " always carry?");
        s.answers.push_back(q.color + " " + q.object);
        break;
    }
    s.metrics.push_back("inclusion");
  }
  s.max_new_tokens = 24;
  s.info = fmt::format("people={}", people.size());
  return s;
}

}  // namespace kvz

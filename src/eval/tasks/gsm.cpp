// GSM-style multi-step arithmetic (the reference splits each GSM8K problem into a context,
// all but the last sentence, and a question, the last sentence; kvzip-spec §6.1). Here the
// context holds several generated stories, each labelled, and each question is one story's
// final sentence. The answer is a worked solution ending in "#### N" (gsm metric).
#include "eval/tasks/registry.h"

#include <fmt/format.h>

namespace kvz {

namespace {
const std::vector<std::string> kItems = {"apples", "marbles", "stamps", "pencils", "shells", "cookies", "stickers",
                                         "coins", "buttons", "books"};
}  // namespace

EvalSample make_gsm(int index, const TaskParams& p) {
  Rng r(sample_seed(p.seed, p.easy ? "gsm-easy" : "gsm", index));
  EvalSample s;
  s.prompt = "gsm";
  std::vector<std::string> stories, questions, answers;
  int64_t n = 0;
  for (int k = 1; n < p.ctx_tokens || k <= 2; ++k) {
    const std::string who = r.pick(first_names()), other = r.pick(first_names()), item = r.pick(kItems);
    int x = r.range(3, 20);
    std::string story = fmt::format("Story {}: {} has {} {}.", k, who, x, item);
    std::string sol = fmt::format("{} starts with {} {}.", who, x, item);
    const int steps = p.easy ? 1 : r.range(3, 4);
    for (int st = 0; st < steps; ++st) {
      const int op = p.easy ? static_cast<int>(r.below(2)) : static_cast<int>(r.below(3));
      if (op == 0) {
        const int b = r.range(2, 15);
        story += fmt::format(" Then {} buys {} more {}.", who, b, item);
        sol += fmt::format(" After buying {} more: {} + {} = {}.", b, x, b, x + b);
        x += b;
      } else if (op == 1 && x > 2) {
        const int c = r.range(1, x - 1);
        story += fmt::format(" Then {} gives {} {} to {}.", who, c, item, other);
        sol += fmt::format(" After giving away {}: {} - {} = {}.", c, x, c, x - c);
        x -= c;
      } else {
        const int m = r.range(2, 3);
        story += fmt::format(" Then the number of {} that {} has grows {} times.", item, who, m);
        sol += fmt::format(" After growing {} times: {} * {} = {}.", m, x, m, x * m);
        x *= m;
      }
    }
    story += "\n\n";
    n += count_tokens(p, story);
    stories.push_back(story);
    questions.push_back(fmt::format("In story {}, how many {} does {} have at the end?", k, item, who));
    answers.push_back(fmt::format("{} The answer is {}.\n#### {}", sol, x, x));
  }
  for (const auto& st : stories) s.context += st;
  while (!s.context.empty() && s.context.back() == '\n') s.context.pop_back();
  // At most three questions, spread over the stories.
  const size_t nq = std::min<size_t>(3, stories.size());
  for (size_t q = 0; q < nq; ++q) {
    const size_t i = (q * stories.size()) / nq + r.below(std::max<size_t>(1, stories.size() / nq));
    s.questions.push_back(questions[std::min(i, stories.size() - 1)]);
    s.answers.push_back(answers[std::min(i, stories.size() - 1)]);
    s.metrics.push_back("gsm");
  }
  s.max_new_tokens = p.easy ? 64 : 96;
  s.info = fmt::format("stories={}", stories.size());
  return s;
}

}  // namespace kvz

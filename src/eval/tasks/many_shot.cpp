// Many-shot in-context classification (SCBench many_shot): many labelled examples of a
// topic classification, then new texts to label. The reference answer is the option line
// "(X) label" and the many_shot metric compares the letters.
#include "eval/tasks/registry.h"

#include <fmt/format.h>

namespace kvz {

namespace {

struct Topic {
  const char* label;
  std::vector<std::string> subjects, actions;
};

const std::vector<Topic>& topics() {
  static const std::vector<Topic> k = {
      {"animals", {"the fox", "a heron", "the old badger", "two otters", "a young deer", "the farm dog"},
       {"slept in the tall grass", "hunted along the riverbank", "raised three cubs this spring",
        "was seen crossing the meadow", "built a nest under the bridge"}},
      {"food", {"the bakery", "my aunt's kitchen", "the soup stall", "the new cafe", "the village cook"},
       {"served warm bread with butter", "made a spicy lentil stew", "sold plum tarts all morning",
        "roasted chestnuts for the fair", "tried a recipe with fresh herbs"}},
      {"weather", {"the morning sky", "the northern wind", "the forecast", "the storm front", "the afternoon"},
       {"brought heavy rain and thunder", "turned cold and foggy", "promised sunshine until Friday",
        "left frost on every window", "cleared up after a grey start"}},
      {"sports", {"the home team", "our goalkeeper", "the cycling club", "the young sprinter", "the rowing crew"},
       {"won the final by two goals", "trained hard before the match", "set a new record on the track",
        "lost narrowly in extra time", "scored twice in the second half"}},
      {"music", {"the choir", "a street fiddler", "the brass band", "the pianist", "the folk duo"},
       {"played a slow waltz", "rehearsed the new symphony", "recorded an album of ballads",
        "sang harmonies at the festival", "tuned every string before the concert"}},
  };
  return k;
}

std::string options_line() {
  std::string s;
  for (size_t i = 0; i < topics().size(); ++i)
    s += fmt::format("{}({}) {}", i ? " " : "", static_cast<char>('A' + i), topics()[i].label);
  return s;
}

std::string example(Rng& r, size_t t) {
  const Topic& tp = topics()[t];
  std::string s = r.pick(tp.subjects) + " " + r.pick(tp.actions) + ".";
  s[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(s[0])));
  return s;
}

}  // namespace

EvalSample make_many_shot(int index, const TaskParams& p) {
  Rng r(sample_seed(p.seed, p.easy ? "many-shot-easy" : "many-shot", index));
  EvalSample s;
  s.context = "Classify each text into one of these topics: " + options_line() + ".\n\n";
  int64_t n = count_tokens(p, s.context);
  int shots = 0;
  while (n < p.ctx_tokens) {
    const size_t t = r.below(topics().size());
    const std::string ex = fmt::format("Text: {}\nLabel: ({}) {}\n\n", example(r, t), static_cast<char>('A' + t),
                                       topics()[t].label);
    n += count_tokens(p, ex);
    s.context += ex;
    ++shots;
  }
  while (!s.context.empty() && s.context.back() == '\n') s.context.pop_back();
  for (int q = 0; q < 3; ++q) {
    const size_t t = r.below(topics().size());
    s.questions.push_back(fmt::format("Text: {}\nOptions: {}\nWhich label fits the text? Answer with the option.",
                                      example(r, t), options_line()));
    s.answers.push_back(fmt::format("({}) {}", static_cast<char>('A' + t), topics()[t].label));
    s.metrics.push_back("many_shot");
  }
  s.max_new_tokens = 12;
  s.info = fmt::format("shots={}", shots);
  return s;
}

}  // namespace kvz

// Shared pieces of the task generators: a portable seeded RNG (std distributions differ
// between standard libraries, so samples would not be reproducible), a token counter that
// sizes contexts with the model's tokenizer, and a generator of filler prose (the
// "haystack") written from our own word lists.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace kvz {

// splitmix64: the same stream on every platform for a given seed.
class Rng {
 public:
  explicit Rng(uint64_t seed) : x_(seed) {}
  uint64_t next() {
    uint64_t z = (x_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  // Uniform in [0, n); n > 0.
  uint64_t below(uint64_t n) { return next() % n; }
  int range(int lo, int hi) { return lo + static_cast<int>(below(static_cast<uint64_t>(hi - lo + 1))); }  // [lo, hi]
  template <class T>
  const T& pick(const std::vector<T>& v) { return v[below(v.size())]; }
  template <class T>
  void shuffle(std::vector<T>& v) {
    for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[below(i)]);
  }

 private:
  uint64_t x_;
};

// Seed of sample `index` of task `task` under the run's seed.
uint64_t sample_seed(uint64_t seed, const std::string& task, int index);

// Counts tokens of a text; the harness passes the model's tokenizer.
using TokenCounter = std::function<int64_t(const std::string&)>;
// Fallback when no tokenizer is given: about 4 bytes per token.
int64_t approx_tokens(const std::string& s);

// Random strings.
std::string random_uuid(Rng& r);                                   // 8-4-4-4-12 lowercase hex
std::string random_alnum(Rng& r, int n, bool lower_only = false);  // [a-z0-9] or [a-zA-Z0-9]
std::string random_upper(Rng& r, int n);                           // [A-Z]
std::string random_digits(Rng& r, int n);                          // no leading zero

// Filler prose: plausible, fact-free sentences about farms, weather, markets, roads...
std::string filler_sentence(Rng& r);
// Paragraphs of filler until `counter` says the text has at least `tokens` tokens
// (counted per sentence, so the total is within a few tokens). Each paragraph is 3-6
// sentences and ends with "\n\n".
std::vector<std::string> filler_sentences(Rng& r, int64_t tokens, const TokenCounter& counter);

// Lists of names our generators draw from (own data).
const std::vector<std::string>& city_names();
const std::vector<std::string>& first_names();
const std::vector<std::string>& object_nouns();

}  // namespace kvz

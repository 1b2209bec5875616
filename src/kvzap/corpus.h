// The KVzap training corpus: text available offline on a Debian machine, never stored in
// the repository, cut into windows of 750-1250 tokens (the paper keeps texts with
// 750 < tokens < 1250, kvzap-and-presses.md §1.4). Sources, in round-robin order:
//   licenses   /usr/share/common-licenses/*            (regular files; symlinks skipped)
//   copyright  /usr/share/doc/*/copyright               (package copyright notices)
//   docs       /usr/share/doc/*/{README,NEWS,changelog,*.txt,*.md}* incl. .gz (read
//              through `gzip -dc`)
//   python     /usr/lib/python3.*/*.py                  (standard-library sources, if present)
//   tasks      our generated evaluation documents (src/eval/tasks, non-easy tasks, ~1,100
//              tokens, seeded)
// Documents are deduplicated by content, shuffled per source from the seed, and read
// lazily; at most the first 48 KiB of a file are used, at most 2 windows per document,
// and documents shorter than a window are joined (blank line between) with the next ones
// of the same source. Whole documents (every n-th, n >= 10 coprime with the number of
// sources, so each source contributes in turn) are held out for validation. Same machine + same seed = same texts.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace kvz {

struct CorpusOptions {
  uint64_t seed = 1;
  std::vector<std::string> sources = {"licenses", "copyright", "docs", "python", "tasks"};
  int64_t min_tokens = 750, max_tokens = 1250;  // window length, uniform in [min, max]
  int max_windows_per_doc = 2;
  int validation_every = 10;  // n: raised to the next number coprime with the source count
};

// The names above, one line each, for --help.
std::string corpus_help();

struct CorpusText {
  std::string source;  // "licenses", ...
  std::string doc;     // path or task name/index (the first document of a joined group)
  std::vector<int32_t> ids;
};

class Corpus {
 public:
  // Lists the sources' documents (throws kvz::Error for an unknown source name, or when
  // none of the sources has any document).
  Corpus(const Tokenizer& tok, CorpusOptions opt);
  ~Corpus();
  // Next window for training (validation = false) or validation; false when the sources
  // are exhausted. Windows of one document never go to both.
  bool next(bool validation, CorpusText& out);
  // {"sources": {name: {"documents": n listed}}, "train"/"validation": {name: {"texts",
  // "tokens"}}} and the options: what the texts handed out so far were made of.
  nlohmann::json describe() const;

 private:
  struct Source;
  bool fill(bool validation);
  const Tokenizer& tok_;
  CorpusOptions opt_;
  std::mt19937_64 rng_;
  std::vector<std::unique_ptr<Source>> sources_;
  size_t turn_ = 0;
  int64_t n_docs_ = 0;
  std::vector<CorpusText> queue_[2];  // ready windows: [0] train, [1] validation
  struct Used {
    int64_t texts = 0, tokens = 0;
  };
  std::map<std::string, Used> used_[2];  // per source, texts handed out: [0] train, [1] validation
};

}  // namespace kvz

#include "kvzap/corpus.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <set>

#include "core/error.h"
#include "core/hash.h"
#include "eval/tasks/registry.h"

namespace kvz {

namespace fs = std::filesystem;

namespace {

constexpr size_t kMaxDocBytes = 48 * 1024;

std::vector<std::string> list_files(const std::string& dir, const std::function<bool(const fs::path&)>& keep) {
  std::vector<std::string> out;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return out;
  for (const auto& e : fs::directory_iterator(dir, fs::directory_options::skip_permission_denied, ec)) {
    if (e.is_symlink(ec) || !e.is_regular_file(ec)) continue;
    if (keep(e.path())) out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> package_dirs() {
  std::vector<std::string> out;
  std::error_code ec;
  if (!fs::is_directory("/usr/share/doc", ec)) return out;
  for (const auto& e : fs::directory_iterator("/usr/share/doc", fs::directory_options::skip_permission_denied, ec))
    if (!e.is_symlink(ec) && e.is_directory(ec)) out.push_back(e.path().string());
  std::sort(out.begin(), out.end());
  return out;
}

bool starts_with(const std::string& s, const char* p) { return s.rfind(p, 0) == 0; }

// Up to kMaxDocBytes of a file, .gz decompressed through gzip (Essential on Debian).
std::string read_doc(const std::string& path) {
  std::string s;
  if (path.size() > 3 && path.compare(path.size() - 3, 3, ".gz") == 0) {
    if (path.find('\'') != std::string::npos) return s;
    FILE* p = popen(("gzip -dc -- '" + path + "' 2>/dev/null").c_str(), "r");
    if (!p) return s;
    char buf[8192];
    size_t n;
    while (s.size() < kMaxDocBytes && (n = fread(buf, 1, sizeof buf, p)) > 0) s.append(buf, n);
    pclose(p);
  } else {
    std::ifstream f(path, std::ios::binary);
    s.resize(kMaxDocBytes);
    f.read(s.data(), static_cast<std::streamsize>(s.size()));
    s.resize(static_cast<size_t>(f.gcount()));
  }
  if (s.size() > kMaxDocBytes) s.resize(kMaxDocBytes);
  return s;
}

// Drops a truncated trailing UTF-8 sequence; false when the text is not UTF-8 text
// (NUL bytes, bad sequences): binaries and Latin-1 files are skipped.
bool clean_utf8(std::string& s) {
  size_t i = 0, last_ok = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == 0) return false;
    const int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (len == 0) return false;
    if (i + len > s.size()) break;
    for (int k = 1; k < len; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    i += len;
    last_ok = i;
  }
  s.resize(last_ok);
  return true;
}

}  // namespace

std::string corpus_help() {
  return "  licenses   /usr/share/common-licenses/* (regular files)\n"
         "  copyright  /usr/share/doc/*/copyright\n"
         "  docs       /usr/share/doc/*/{README,NEWS,changelog,*.txt,*.md}* incl. .gz (via gzip -dc)\n"
         "  python     /usr/lib/python3.*/*.py (standard library, if installed)\n"
         "  tasks      generated evaluation documents (src/eval/tasks, seeded)\n"
         "Files: first 48 KiB, deduplicated, shuffled by --seed; windows of 750-1250 tokens, at most 2 per "
         "document; short documents joined; about every 10th document (every n-th, n >= 10 coprime with the number of "
         "sources) held out for validation.";
}

struct Corpus::Source {
  std::string name;
  std::vector<std::string> docs;  // paths, or "task/index" for generated documents
  size_t next = 0;
  int64_t n_listed = 0;
  std::set<uint64_t> seen;  // content hashes (copyright files are often identical)
};

Corpus::Corpus(const Tokenizer& tok, CorpusOptions opt) : tok_(tok), opt_(std::move(opt)), rng_(opt_.seed) {
  if (opt_.min_tokens < 1 || opt_.max_tokens < opt_.min_tokens)
    fail("corpus: bad window [{}, {}]", opt_.min_tokens, opt_.max_tokens);
  for (const std::string& name : opt_.sources) {
    auto s = std::make_unique<Source>();
    s->name = name;
    if (name == "licenses") {
      s->docs = list_files("/usr/share/common-licenses", [](const fs::path&) { return true; });
    } else if (name == "copyright" || name == "docs") {
      for (const std::string& d : package_dirs()) {
        auto files = list_files(d, [&](const fs::path& p) {
          const std::string f = p.filename().string();
          if (name == "copyright") return f == "copyright";
          const std::string ext = p.extension().string();
          const std::string base = ext == ".gz" ? p.stem().string() : f;
          return starts_with(f, "README") || starts_with(f, "NEWS") || starts_with(f, "changelog") ||
                 base.ends_with(".txt") || base.ends_with(".md");
        });
        s->docs.insert(s->docs.end(), files.begin(), files.end());
      }
    } else if (name == "python") {
      std::vector<std::string> dirs;
      std::error_code ec;
      if (fs::is_directory("/usr/lib", ec))
        for (const auto& e : fs::directory_iterator("/usr/lib", fs::directory_options::skip_permission_denied, ec)) {
          const std::string f = e.path().filename().string();
          if (starts_with(f, "python3.") && e.is_directory(ec)) dirs.push_back(e.path().string());
        }
      std::sort(dirs.begin(), dirs.end());
      for (const std::string& d : dirs) {
        auto files = list_files(d, [](const fs::path& p) { return p.extension() == ".py"; });
        s->docs.insert(s->docs.end(), files.begin(), files.end());
      }
    } else if (name == "tasks") {
      for (int idx = 0; idx < 200; ++idx)
        for (const TaskInfo& t : task_registry())
          if (!t.easy) s->docs.push_back(fmt::format("{}/{}", t.name, idx));
    } else {
      fail("corpus: unknown source '{}' (known: licenses, copyright, docs, python, tasks)", name);
    }
    s->n_listed = static_cast<int64_t>(s->docs.size());
    std::shuffle(s->docs.begin(), s->docs.end(), rng_);
    sources_.push_back(std::move(s));
  }
  int64_t total = 0;
  for (const auto& s : sources_) total += s->n_listed;
  if (total == 0) fail("corpus: no documents found in the sources ({})", fmt::join(opt_.sources, ", "));
}

Corpus::~Corpus() = default;

bool Corpus::fill(bool validation) {
  const int want = validation ? 1 : 0;
  size_t dry = 0;
  while (queue_[want].empty()) {
    if (dry >= sources_.size()) return false;
    Source& s = *sources_[turn_ % sources_.size()];
    ++turn_;
    if (s.next >= s.docs.size()) {
      ++dry;
      continue;
    }
    dry = 0;
    // One document group: documents of this source joined until a window fits.
    std::vector<int32_t> ids;
    std::string first;
    while (static_cast<int64_t>(ids.size()) < opt_.min_tokens && s.next < s.docs.size()) {
      const std::string& doc = s.docs[s.next++];
      std::string text;
      if (s.name == "tasks") {
        const size_t slash = doc.rfind('/');
        TaskParams p;
        p.ctx_tokens = 1100;
        p.seed = opt_.seed;
        p.count = [this](const std::string& t) { return static_cast<int64_t>(tok_.encode(t, false, false).size()); };
        text = make_task_sample(find_task(doc.substr(0, slash)), std::stoi(doc.substr(slash + 1)), p).context;
      } else {
        text = read_doc(doc);
        if (!clean_utf8(text)) continue;
      }
      if (text.find_first_not_of(" \t\r\n") == std::string::npos) continue;
      if (!s.seen.insert(fnv1a(text.data(), text.size())).second) continue;
      if (!ids.empty()) text = "\n\n" + text;
      const std::vector<int32_t> t = tok_.encode(text, false, false);
      ids.insert(ids.end(), t.begin(), t.end());
      if (first.empty()) first = doc;
    }
    if (static_cast<int64_t>(ids.size()) < opt_.min_tokens) continue;  // source ran out mid-group
    // Every n-th document, n coprime with the number of sources so that the round robin
    // sends each source's documents to validation in turn.
    int every = std::max(2, opt_.validation_every);
    while (std::gcd(every, static_cast<int>(sources_.size())) != 1) ++every;
    const bool to_val = n_docs_ % every == every - 1;
    ++n_docs_;
    std::uniform_int_distribution<int64_t> len_d(opt_.min_tokens, opt_.max_tokens);
    int64_t at = 0;
    for (int w = 0; w < opt_.max_windows_per_doc; ++w) {
      const int64_t len = std::min(len_d(rng_), static_cast<int64_t>(ids.size()) - at);
      if (len < opt_.min_tokens) break;
      queue_[to_val ? 1 : 0].push_back({s.name, first, std::vector<int32_t>(ids.begin() + at, ids.begin() + at + len)});
      at += len;
    }
  }
  return true;
}

bool Corpus::next(bool validation, CorpusText& out) {
  const int q = validation ? 1 : 0;
  if (queue_[q].empty() && !fill(validation)) return false;
  out = std::move(queue_[q].front());
  queue_[q].erase(queue_[q].begin());
  Used& u = used_[q][out.source];
  ++u.texts;
  u.tokens += static_cast<int64_t>(out.ids.size());
  return true;
}

nlohmann::json Corpus::describe() const {
  nlohmann::json j = nlohmann::json::object();
  for (int q = 0; q < 2; ++q)
    for (const auto& [name, u] : used_[q]) j[q ? "validation" : "train"][name] = {{"texts", u.texts}, {"tokens", u.tokens}};
  for (const auto& s : sources_) j["sources"][s->name]["documents"] = s->n_listed;
  j["seed"] = opt_.seed;
  j["window_tokens"] = {opt_.min_tokens, opt_.max_tokens};
  j["max_windows_per_doc"] = opt_.max_windows_per_doc;
  j["validation_every"] = opt_.validation_every;
  j["text"] = corpus_help();
  return j;
}

}  // namespace kvz

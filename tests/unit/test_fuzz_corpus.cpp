// The fuzz targets' bodies (fuzz/*.cpp, fuzz/targets.h) over the committed inputs, in the
// normal test build: every seed of fuzz/corpus/<target>/ must end as an accepted input or
// a kvz::Error (under scripts/sanitize.sh also without a sanitizer report), and each target
// must accept at least one of its seeds, so a seed corpus that no longer reaches past the
// first check is noticed. fuzz/regression/<target>/<case> holds inputs a fuzzer found, each
// with <case>.expect: the substring the kvz::Error must contain (or "accepted").
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "fuzz/targets.h"
#include "test_paths.h"

namespace fs = std::filesystem;

namespace {

std::vector<uint8_t> bytes_of(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

std::string run(const kvz::fuzz::Target& t, const fs::path& p) {
  const std::vector<uint8_t> b = bytes_of(p);
  return t.run(b.data(), b.size());
}

std::vector<fs::path> files_in(const fs::path& dir) {
  std::vector<fs::path> out;
  if (!fs::is_directory(dir)) return out;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (!e.is_regular_file() || e.path().extension() == ".expect" || e.path().filename() == "README.md") continue;
    out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

TEST(FuzzCorpus, EverySeedIsAcceptedOrRefusedWithAKvzError) {
  const fs::path root = fs::path(kvz::test::source_dir()) / "fuzz" / "corpus";
  for (const kvz::fuzz::Target& t : kvz::fuzz::kTargets) {
    const std::vector<fs::path> seeds = files_in(root / t.name);
    EXPECT_FALSE(seeds.empty()) << "no seeds in fuzz/corpus/" << t.name;
    int accepted = 0;
    for (const fs::path& p : seeds) {
      SCOPED_TRACE(p.string());
      if (run(t, p).empty()) ++accepted;
    }
    EXPECT_GT(accepted, 0) << "no seed of fuzz/corpus/" << t.name << " passes the reader";
  }
}

TEST(FuzzCorpus, RegressionInputsEndInTheirExpectedError) {
  const fs::path root = fs::path(kvz::test::source_dir()) / "fuzz" / "regression";
  int n = 0;
  for (const kvz::fuzz::Target& t : kvz::fuzz::kTargets)
    for (const fs::path& p : files_in(root / t.name)) {
      SCOPED_TRACE(p.string());
      const fs::path ex = p.string() + ".expect";
      ASSERT_TRUE(fs::exists(ex)) << "regression input without its .expect file";
      std::ifstream in(ex);
      std::string want;
      std::getline(in, want);
      ASSERT_FALSE(want.empty()) << ex;
      const std::string got = run(t, p);
      if (want == "accepted")
        EXPECT_EQ(got, "") << "refused: " << got;
      else
        EXPECT_NE(got.find(want), std::string::npos) << "error: '" << got << "', expected it to contain '" << want << "'";
      ++n;
    }
  RecordProperty("regression_inputs", n);
}

// GGUF reader: round trip of every metadata type, and hostile files (truncation at every
// length, bad magic, absurd counts, overlapping / out-of-range tensors) give kvz::Error.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>

#include "core/error.h"
#include "io/gguf.h"
#include "io/gguf_writer.h"
#include "synthetic_model.h"

using namespace kvz;

namespace {

GgufWriter small_file() {
  GgufWriter w;
  w.set_str("general.architecture", "llama");
  w.set_u32("a.u32", 7);
  w.set_i32("a.i32", -3);
  w.set_u64("a.u64", 1ull << 40);
  w.set_f32("a.f32", 0.25f);
  w.set_bool("a.bool", true);
  w.set_str_array("a.strs", {"x", "", "zzz"});
  w.set_i32_array("a.ints", {1, -2, 3});
  w.set_f32_array("a.floats", {0.5f, 1.5f});
  std::vector<float> t1(8 * 2, 1.0f);
  w.add_tensor("t1", DType::F32, {8, 2}, t1.data(), t1.size() * 4);
  std::vector<uint16_t> t2(32, 0x3c00);
  w.add_tensor("t2", DType::F16, {32}, t2.data(), t2.size() * 2);
  return w;
}

std::unique_ptr<GgufFile> parse(const std::vector<uint8_t>& b) { return GgufFile::from_memory(b.data(), b.size(), "mem.gguf"); }

std::string error_of(const std::vector<uint8_t>& b) {
  try {
    parse(b);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// Offset of the first tensor-info record's `offset` field is hard to compute by hand; the
// tests below patch fields located by searching for the tensor name.
size_t find(const std::vector<uint8_t>& b, const std::string& s) {
  auto it = std::search(b.begin(), b.end(), s.begin(), s.end());
  return static_cast<size_t>(it - b.begin());
}

}  // namespace

TEST(Gguf, RoundTripEveryType) {
  const auto b = small_file().to_bytes();
  auto f = parse(b);
  EXPECT_EQ(f->version(), 3u);
  EXPECT_EQ(f->get_str("general.architecture"), "llama");
  EXPECT_EQ(f->get_int("a.u32"), 7);
  EXPECT_EQ(f->get_int("a.i32"), -3);
  EXPECT_EQ(f->get_int("a.u64"), int64_t{1} << 40);
  EXPECT_FLOAT_EQ(static_cast<float>(f->get_float("a.f32")), 0.25f);
  EXPECT_EQ(f->get_bool_opt("a.bool"), true);
  EXPECT_EQ(f->get_str_array("a.strs"), (std::vector<std::string>{"x", "", "zzz"}));
  EXPECT_EQ(f->get_int_array("a.ints"), (std::vector<int64_t>{1, -2, 3}));
  EXPECT_EQ(f->get_float_array("a.floats"), (std::vector<double>{0.5, 1.5}));
  ASSERT_EQ(f->tensors().size(), 2u);
  const GgufTensor* t1 = f->tensor("t1");
  ASSERT_NE(t1, nullptr);
  EXPECT_EQ(t1->shape, (std::vector<int64_t>{8, 2}));
  EXPECT_EQ(t1->n_bytes, 64u);
  float v;
  std::memcpy(&v, t1->data, 4);
  EXPECT_EQ(v, 1.0f);
  EXPECT_EQ(f->tensor("t2")->type, DType::F16);
  EXPECT_EQ(f->tensor("nope"), nullptr);
}

TEST(Gguf, TypedGetterErrorsNameTheKey) {
  const auto b = small_file().to_bytes();
  auto f = parse(b);
  try {
    f->get_str("a.u32");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'a.u32' has type u32, expected string"), std::string::npos) << e.what();
  }
  EXPECT_THROW(f->get_int("missing.key"), Error);
  EXPECT_FALSE(f->get_int_opt("missing.key").has_value());
}

TEST(Gguf, EveryTruncationIsACleanError) {
  const auto full = small_file().to_bytes();
  for (size_t n = 0; n < full.size(); ++n) {
    std::vector<uint8_t> b(full.begin(), full.begin() + n);
    EXPECT_FALSE(error_of(b).empty()) << "truncated to " << n << " bytes was accepted";
  }
}

TEST(Gguf, BadMagicAndVersion) {
  auto b = small_file().to_bytes();
  b[0] = 'X';
  EXPECT_NE(error_of(b).find("bad magic"), std::string::npos);
  b = small_file().to_bytes();
  b[4] = 9;
  EXPECT_NE(error_of(b).find("version 9"), std::string::npos);
}

TEST(Gguf, HugeCountsAreRejectedBeforeAllocating) {
  auto b = small_file().to_bytes();
  const uint64_t huge = ~0ull >> 1;
  std::memcpy(b.data() + 8, &huge, 8);  // tensor count
  EXPECT_NE(error_of(b).find("tensor count"), std::string::npos);
  b = small_file().to_bytes();
  std::memcpy(b.data() + 16, &huge, 8);  // metadata count
  EXPECT_NE(error_of(b).find("metadata count"), std::string::npos);
  // an array length far beyond the file
  b = small_file().to_bytes();
  const size_t at = find(b, "a.strs") + 6 + 4 + 4;  // key, value type, element type
  std::memcpy(b.data() + at, &huge, 8);
  EXPECT_FALSE(error_of(b).empty());
}

TEST(Gguf, TensorPastEndOfFileAndOverlap) {
  auto b = small_file().to_bytes();
  // t2's info: name, n_dims(4), ne0(8), type(4), offset(8)
  size_t at = find(b, "t2") + 2 + 4 + 8 + 4;
  uint64_t off = 1 << 20;
  std::memcpy(b.data() + at, &off, 8);
  EXPECT_NE(error_of(b).find("past the end"), std::string::npos) << error_of(b);
  b = small_file().to_bytes();
  off = 32;  // t1 is 64 bytes at offset 0: overlaps
  std::memcpy(b.data() + at, &off, 8);
  EXPECT_NE(error_of(b).find("overlap"), std::string::npos) << error_of(b);
  off = 3;
  std::memcpy(b.data() + at, &off, 8);
  EXPECT_NE(error_of(b).find("aligned"), std::string::npos) << error_of(b);
}

TEST(Gguf, UnknownTensorTypeAndBadDims) {
  auto b = small_file().to_bytes();
  const size_t at = find(b, "t2") + 2 + 4 + 8;
  uint32_t bad = 999;
  std::memcpy(b.data() + at, &bad, 4);
  EXPECT_NE(error_of(b).find("type id 999"), std::string::npos);
  b = small_file().to_bytes();
  uint32_t dims = 77;
  std::memcpy(b.data() + find(b, "t2") + 2, &dims, 4);
  EXPECT_NE(error_of(b).find("dimensions"), std::string::npos);
}

TEST(Gguf, RandomByteFlipsNeverCrash) {
  const auto full = test::synthetic_llama({}).to_bytes();
  std::mt19937 rng(123);
  for (int i = 0; i < 2000; ++i) {
    auto b = full;
    const int n_flip = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < n_flip; ++k) b[rng() % std::min<size_t>(b.size(), 4096)] ^= static_cast<uint8_t>(1u << (rng() % 8));
    try {
      parse(b);
    } catch (const Error&) {
    }
  }
  SUCCEED();
}

TEST(Gguf, OpenMissingFileIsAnError) {
  EXPECT_THROW(GgufFile::open("/nonexistent/model.gguf"), Error);
  EXPECT_THROW(GgufFile::open("/tmp"), Error);
}

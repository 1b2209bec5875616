// safetensors reader: a well-formed file round-trips; hand-made hostile files (truncated,
// header length past EOF, bad JSON, offsets out of range or overlapping, shape/size
// mismatch, unknown dtype, giant dims) give a kvz::Error naming the file and the problem.
#include <gtest/gtest.h>

#include <cstring>

#include "core/error.h"
#include "io/safetensors.h"

using namespace kvz;

namespace {

std::vector<uint8_t> f32_bytes(std::vector<float> v) {
  std::vector<uint8_t> b(v.size() * 4);
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

std::vector<uint8_t> good() {
  return safetensors_bytes({{"a.weight", "F32", {2, 3}, f32_bytes({1, 2, 3, 4, 5, 6})},
                            {"b.bias", "BF16", {4}, std::vector<uint8_t>(8, 0)},
                            {"steps", "I64", {}, std::vector<uint8_t>(8, 0)}},
                           {{"format", "pt"}});
}

// A file from a raw JSON header and a data section of n_data bytes. The header is padded
// with spaces to a multiple of 8 bytes, as the reference writer pads it (tensors aligned),
// unless `pad` is false.
std::vector<uint8_t> raw(std::string header, size_t n_data, bool pad = true) {
  while (pad && header.size() % 8 != 0) header += ' ';
  std::vector<uint8_t> out;
  out.reserve(8 + header.size() + n_data);
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(static_cast<uint64_t>(header.size()) >> (8 * i)));
  out.insert(out.end(), header.begin(), header.end());
  out.resize(out.size() + n_data, 0);
  return out;
}

std::string error_of(const std::vector<uint8_t>& b) {
  try {
    SafetensorsFile::from_memory(b.data(), b.size(), "bad.safetensors");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

#define EXPECT_ERROR_HAS(bytes, text)                                   \
  do {                                                                  \
    const std::string msg_ = error_of(bytes);                           \
    EXPECT_NE(msg_.find("bad.safetensors"), std::string::npos) << msg_; \
    EXPECT_NE(msg_.find(text), std::string::npos) << msg_;              \
  } while (0)

}  // namespace

TEST(Safetensors, RoundTrip) {
  const auto b = good();
  auto f = SafetensorsFile::from_memory(b.data(), b.size(), "good.safetensors");
  ASSERT_EQ(f->tensors().size(), 3u);
  const SafeTensor* a = f->tensor("a.weight");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(a->type, DType::F32);
  EXPECT_EQ(a->n_bytes, 24u);
  float v[6];
  std::memcpy(v, a->data, 24);
  EXPECT_EQ(v[5], 6.0f);
  EXPECT_EQ(f->tensor("b.bias")->type, DType::BF16);
  EXPECT_FALSE(f->tensor("steps")->type.has_value());  // known dtype, not computable
  EXPECT_EQ(f->tensor("steps")->n_elements(), 1);      // a scalar
  EXPECT_EQ(f->metadata().at("format"), "pt");
  EXPECT_EQ(f->tensor("missing"), nullptr);
}

TEST(Safetensors, EveryTruncationIsAnError) {
  const auto b = good();
  for (size_t n = 0; n < b.size(); ++n) {
    std::vector<uint8_t> t(b.begin(), b.begin() + n);
    EXPECT_NE(error_of(t), "") << "truncated to " << n << " bytes parsed";
  }
}

TEST(Safetensors, HostileHeaders) {
  // Header length past EOF, and absurdly large.
  auto b = good();
  b[0] = 0xff;
  b[1] = 0xff;
  EXPECT_ERROR_HAS(b, "runs past the end of the file");
  b = good();
  for (int i = 0; i < 8; ++i) b[i] = 0xff;
  EXPECT_ERROR_HAS(b, "runs past the end of the file");
  EXPECT_ERROR_HAS(std::vector<uint8_t>(5, 0), "too small");
  EXPECT_ERROR_HAS(raw("{\"a\": ", 0), "not valid JSON");
  EXPECT_ERROR_HAS(raw("[1, 2]", 0), "not an object");
  EXPECT_ERROR_HAS(raw(R"({"a": 3})", 0), "entry is not an object");
  EXPECT_ERROR_HAS(raw(R"({"__metadata__": {"k": 1}})", 0), "not a string");
}

TEST(Safetensors, HostileTensors) {
  EXPECT_ERROR_HAS(raw(R"({"a": {"dtype": "Q4", "shape": [2], "data_offsets": [0, 2]}})", 2), "unknown dtype 'Q4'");
  EXPECT_ERROR_HAS(raw(R"({"a": {"shape": [2], "data_offsets": [0, 8]}})", 8), "dtype");
  EXPECT_ERROR_HAS(raw(R"({"a": {"dtype": "F32", "data_offsets": [0, 8]}})", 8), "shape");
  EXPECT_ERROR_HAS(raw(R"({"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}})", 8), "non-negative");
  EXPECT_ERROR_HAS(raw(R"({"a": {"dtype": "F32", "shape": [2.5], "data_offsets": [0, 8]}})", 8), "non-negative");
  EXPECT_ERROR_HAS(raw(R"({"a": {"dtype": "F32", "shape": [2]}})", 8), "data_offsets");
  EXPECT_ERROR_HAS(raw(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0]}})", 8), "data_offsets");
  EXPECT_ERROR_HAS(raw(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [-1, 7]}})", 8), "data_offsets");
  // Offsets out of range / reversed.
  EXPECT_ERROR_HAS(raw(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})", 8), "past the end");
  EXPECT_ERROR_HAS(raw(R"({"a": {"dtype": "F32", "shape": [0], "data_offsets": [8, 4]}})", 8), "end before");
  // Shape/size mismatch.
  EXPECT_ERROR_HAS(raw(R"({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})", 12), "needs 12");
  EXPECT_ERROR_HAS(raw(R"({"a": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [0, 4]}})", 8), "needs 8");
  // Giant dims: the product overflows u64, or is merely larger than the file.
  EXPECT_ERROR_HAS(raw(R"({"a": {"dtype": "F32", "shape": [4294967296, 4294967296, 16], "data_offsets": [0, 8]}})", 8),
                   "larger than");
  EXPECT_ERROR_HAS(raw(R"({"a": {"dtype": "F64", "shape": [2305843009213693952, 1], "data_offsets": [0, 8]}})", 8),
                   "larger than");
  EXPECT_ERROR_HAS(raw(R"({"a": {"dtype": "F32", "shape": [18446744073709551615], "data_offsets": [0, 8]}})", 8),
                   "too large");
  EXPECT_ERROR_HAS(raw(R"({"a": {"dtype": "F32", "shape": [1,1,1,1,1,1,1,1,1], "data_offsets": [0, 4]}})", 4),
                   "dimensions");
  // Overlap.
  EXPECT_ERROR_HAS(raw(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                           "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})", 12),
                   "overlap");
  // Data not aligned to its elements (found by fuzzing: typed reads of it were undefined
  // behaviour): an unpadded header, or an offset inside an element.
  EXPECT_ERROR_HAS(raw(R"({"a": {"dtype": "F16", "shape": [2], "data_offsets": [0, 4]}})", 4, false),
                   "not aligned to its 2-byte F16 elements");
  EXPECT_ERROR_HAS(raw(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [2, 6]}})", 8), "byte");
  EXPECT_EQ(error_of(raw(R"({"a": {"dtype": "U8", "shape": [3], "data_offsets": [1, 4]}})", 4, false)), "");
  // A zero-size tensor may sit anywhere inside the data; a giant dim times zero is empty.
  const auto ok = raw(R"({"e": {"dtype": "F32", "shape": [0, 1000000000000], "data_offsets": [4, 4]},
                          "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})", 8);
  EXPECT_EQ(error_of(ok), "");
}

// Quantized types and matmul: golden dequantization against gguf-py, every ISA kernel
// against kernels/ref on tail-hitting shapes, thread and batch invariance, and matmul
// against an f64 dot of the dequantized weights.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <atomic>
#include <cmath>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/fp16.h"
#include "core/thread_pool.h"
#include "kernels/dispatch.h"
#include "kernels/matmul_multi.h"
#include "kernels/types.h"

namespace kvz {
namespace {

std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  EXPECT_TRUE(f.good()) << path;
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

constexpr DType kSupported[] = {DType::F32,  DType::F16,  DType::BF16, DType::Q4_0, DType::Q4_1, DType::Q5_0,
                                DType::Q5_1, DType::Q8_0, DType::Q4_K, DType::Q5_K, DType::Q6_K};

// Random but valid weight rows: random bytes for the quants, fp16 scale fields replaced by
// sane values (|d| in [1e-3, 1e-1], signed mins), float types from a normal distribution.
std::vector<uint8_t> random_weights(DType t, int64_t n_out, int64_t n_in, std::mt19937& rng) {
  const TypeInfo& ti = type_info(t);
  const size_t rb = row_bytes(t, n_in);
  std::vector<uint8_t> w(rb * n_out);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::uniform_real_distribution<float> ud(std::log(1e-3f), std::log(1e-1f));
  auto put16 = [&](size_t off, uint16_t v) { std::memcpy(&w[off], &v, 2); };
  const size_t n_el = static_cast<size_t>(n_out * n_in);
  if (t == DType::F32) {
    for (size_t i = 0; i < n_el; ++i) {
      const float v = nd(rng);
      std::memcpy(&w[4 * i], &v, 4);
    }
    return w;
  }
  if (t == DType::F16 || t == DType::BF16) {
    for (size_t i = 0; i < n_el; ++i) put16(2 * i, t == DType::F16 ? f32_to_fp16(nd(rng)) : f32_to_bf16(nd(rng)));
    return w;
  }
  for (auto& b : w) b = static_cast<uint8_t>(rng());
  auto scale = [&](bool signed_) {
    const float v = std::exp(ud(rng));
    return f32_to_fp16(signed_ && (rng() & 1) ? -v : v);
  };
  const size_t n_blocks = w.size() / ti.type_size;
  for (size_t ib = 0; ib < n_blocks; ++ib) {
    const size_t o = ib * ti.type_size;
    switch (t) {
      case DType::Q4_1:
      case DType::Q5_1: put16(o, scale(false)), put16(o + 2, scale(true)); break;
      case DType::Q4_K:
      case DType::Q5_K: put16(o, scale(false)), put16(o + 2, scale(false)); break;
      case DType::Q6_K: put16(o + 208, scale(true)); break;
      default: put16(o, scale(true)); break;
    }
  }
  return w;
}

std::vector<float> random_acts(int64_t n, std::mt19937& rng) {
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> x(n);
  for (auto& v : x) v = nd(rng);
  for (int64_t i = 0; i + 32 <= n; i += 96) x[i + 5] *= 20.f;  // outliers, as in real activations
  return x;
}

// ---------------------------------------------------------------- golden dequantization

// Tolerance: bitwise. dequantize_row is built without FMA and evaluates in gguf-py's
// operation order, so every f32 must match exactly.
TEST(QuantGolden, DequantizeMatchesGgufPy) {
  const std::string dir = std::string(KVZ_SOURCE_DIR) + "/tests/golden/data/";
  const auto index = nlohmann::json::parse(read_file(dir + "quant_index.json"));
  int n_checked = 0;
  for (const auto& e : index["types"]) {
    const auto t = static_cast<DType>(e["type_id"].get<uint32_t>());
    const int64_t n = e["n"].get<int64_t>();
    const size_t raw_bytes = e["raw_bytes"].get<size_t>();
    SCOPED_TRACE(e["name"].get<std::string>());
    ASSERT_EQ(row_bytes(t, n), raw_bytes);
    const auto data = read_file(dir + e["file"].get<std::string>());
    ASSERT_EQ(data.size(), raw_bytes + 4 * n);
    std::vector<float> got(n), want(n);
    std::memcpy(want.data(), data.data() + raw_bytes, 4 * n);
    dequantize_row(t, data.data(), got.data(), n);
    EXPECT_EQ(std::memcmp(got.data(), want.data(), 4 * n), 0);
    for (int64_t i = 0; i < n; ++i) {
      uint32_t a, b;
      std::memcpy(&a, &got[i], 4);
      std::memcpy(&b, &want[i], 4);
      if (a != b) {
        ADD_FAILURE() << "element " << i << ": got " << got[i] << " want " << want[i];
        break;
      }
    }
    // get_row: row 1 of a 2-row matrix of this type.
    std::vector<uint8_t> two(2 * raw_bytes);
    std::memcpy(two.data() + raw_bytes, data.data(), raw_bytes);
    get_row(WeightView{t, n, 2, two.data()}, 1, got.data());
    EXPECT_EQ(std::memcmp(got.data(), want.data(), 4 * n), 0);
    ++n_checked;
  }
  EXPECT_EQ(n_checked, 10);
}

TEST(QuantTypes, TableAndErrors) {
  EXPECT_EQ(type_info(DType::Q4_1).type_size, 20u);
  EXPECT_EQ(type_info(DType::Q6_K).block_size, 256);
  EXPECT_EQ(row_bytes(DType::Q8_0, 576), 18u * 34u);
  EXPECT_EQ(row_bytes(DType::F16, 7), 14u);
  EXPECT_STREQ(type_name(DType::Q5_K), "q5_k");
  EXPECT_EQ(type_info(4u), nullptr);  // removed Q4_2
  EXPECT_EQ(type_info(999u), nullptr);
  ASSERT_NE(type_info(10u), nullptr);
  EXPECT_FALSE(type_info(10u)->supported);
  for (DType t : kSupported) EXPECT_TRUE(type_info(t).supported) << type_name(t);

  std::vector<uint8_t> buf(4096);
  std::vector<float> x(256), y(4);
  EXPECT_THROW(dequantize_row(DType::Q2_K, buf.data(), x.data(), 256), Error);
  EXPECT_THROW(matmul(WeightView{DType::Q3_K, 256, 1, buf.data()}, x.data(), 1, y.data(), nullptr), Error);
  EXPECT_THROW(matmul(WeightView{DType::Q4_0, 48, 1, buf.data()}, x.data(), 1, y.data(), nullptr), Error);
  EXPECT_THROW(get_row(WeightView{DType::Q4_0, 32, 1, buf.data()}, 1, x.data()), Error);
}

// ---------------------------------------------------------------- ISA vs reference

struct Shape {
  int64_t n_out, n_in, n_tok;
};

// n_in per type: one block, a block count that is not a multiple of 8 (scale-group tail),
// and a model-like width (576 = 18 blocks of 32). Float types also get odd widths.
std::vector<int64_t> widths(DType t) {
  const int bs = type_info(t).block_size;
  if (bs == 256) return {256, 768};
  if (bs == 32) return {32, 256, 288, 576};  // 1 block; 8 (no tail); 8 + 1; 16 + 2
  return {1, 13, 576};
}

std::vector<Shape> shapes(DType t) {
  std::vector<Shape> s;
  for (int64_t n_in : widths(t))
    for (int64_t n_out : {1, 17, 257})
      for (int64_t n_tok : {1, 3, 17}) s.push_back({n_out, n_in, n_tok});
  return s;
}

// Per-output scale for comparisons: sum_i blockmax|W[o]|_i * |x[t][i]| in f64, where
// blockmax is the largest |w| of the block holding i. It bounds every partial sum either
// path forms (including the unsigned-quant + offset split of the AVX2 kernels).
std::vector<double> magnitude(DType t, const std::vector<float>& wd, const std::vector<float>& x, const Shape& s) {
  const int bs = std::max(type_info(t).block_size, 1);
  std::vector<double> mag(s.n_tok * s.n_out);
  std::vector<double> bm(s.n_in);
  for (int64_t o = 0; o < s.n_out; ++o) {
    for (int64_t b = 0; b < s.n_in; b += bs) {
      double m = 0;
      for (int64_t i = b; i < b + bs; ++i) m = std::max(m, std::fabs(double(wd[o * s.n_in + i])));
      for (int64_t i = b; i < b + bs; ++i) bm[i] = m;
    }
    for (int64_t it = 0; it < s.n_tok; ++it) {
      double acc = 0;
      for (int64_t i = 0; i < s.n_in; ++i) acc += bm[i] * std::fabs(double(x[it * s.n_in + i]));
      mag[it * s.n_out + o] = acc;
    }
  }
  return mag;
}

std::vector<float> dequantize_all(DType t, const std::vector<uint8_t>& w, const Shape& s) {
  std::vector<float> wd(s.n_out * s.n_in);
  const size_t rb = row_bytes(t, s.n_in);
  for (int64_t o = 0; o < s.n_out; ++o) dequantize_row(t, w.data() + o * rb, wd.data() + o * s.n_in, s.n_in);
  return wd;
}

// Activation quantization: AVX2 and ref produce identical bytes (same ggml AVX2 arithmetic).
TEST(QuantKernels, ActivationQuantizationIsBitwiseEqual) {
  const KernelTable* avx2 = kernels_avx2();
  if (!avx2) GTEST_SKIP() << "CPU has no AVX2";
  const KernelTable& ref = kernels_reference();
  std::mt19937 rng(7);
  for (int64_t n_in : {32, 288, 576, 1536}) {
    auto x = random_acts(n_in, rng);
    std::fill(x.begin(), x.begin() + 32, 0.f);  // zero block
    for (auto mode : {blk::Q8AMode::kNone, blk::Q8AMode::kSumFp16, blk::Q8AMode::kSumExact}) {
      const size_t nb = blk::q8a_row_bytes(n_in);
      std::vector<uint8_t> a(nb + 64), b(nb + 64);
      uint8_t* pa = a.data() + (64 - reinterpret_cast<uintptr_t>(a.data()) % 64) % 64;
      uint8_t* pb = b.data() + (64 - reinterpret_cast<uintptr_t>(b.data()) % 64) % 64;
      ref.quantize_q8a(x.data(), n_in, pa, mode);
      avx2->quantize_q8a(x.data(), n_in, pb, mode);
      EXPECT_EQ(std::memcmp(pa, pb, nb), 0) << "n_in " << n_in;
    }
  }
}

// The Q8_K activation blocks of the K-quant tiles: the x86 builds give ref's bytes, including
// a zero block and a block whose largest magnitude comes first negative, then positive (the
// first one sets the scale's sign).
TEST(QuantKernels, Q8KActivationQuantizationIsBitwiseEqual) {
  const KernelTable& ref = kernels_reference();
  std::mt19937 rng(11);
  for (const KernelTable* k : {kernels_avx2(), kernels_avx512()}) {
    if (!k) continue;
    for (int64_t n_in : {256, 1536, 2048}) {
      auto x = random_acts(n_in, rng);
      std::fill(x.begin(), x.begin() + 256, 0.f);  // zero block
      if (n_in > 256) {
        x[300] = -200.f;  // a tie of magnitudes, larger than the outliers of random_acts
        x[400] = 200.f;
      }
      const size_t bytes = static_cast<size_t>(n_in / blk::kQKK) * sizeof(blk::Q8_K);
      std::vector<uint8_t> a(bytes), b(bytes, 0xAB);
      ref.quantize_q8k(x.data(), n_in, a.data());
      k->quantize_q8k(x.data(), n_in, b.data());
      EXPECT_EQ(std::memcmp(a.data(), b.data(), bytes), 0) << k->isa << " n_in " << n_in;
    }
  }
}

// Every AVX2 vec_dot and matmul against the reference, on all tail-hitting shapes.
// Tolerance: |avx2 - ref| <= 2e-6 * magnitude (see magnitude()); both paths use the same
// quantized activations and exact integer block sums, so they differ only in f32
// summation order (about n_in/32 roundings of relative size 6e-8).
TEST(QuantKernels, Avx2MatchesReference) {
  const KernelTable* avx2 = kernels_avx2();
  if (!avx2) GTEST_SKIP() << "CPU has no AVX2";
  const KernelTable& ref = kernels_reference();
  std::mt19937 rng(42);
  for (DType t : kSupported) {
    for (const Shape& s : shapes(t)) {
      SCOPED_TRACE(std::string(type_name(t)) + " n_out=" + std::to_string(s.n_out) + " n_in=" +
                   std::to_string(s.n_in) + " n_tok=" + std::to_string(s.n_tok));
      const auto w = random_weights(t, s.n_out, s.n_in, rng);
      const auto x = random_acts(s.n_tok * s.n_in, rng);
      const WeightView wv{t, s.n_in, s.n_out, w.data()};
      std::vector<float> ya(s.n_tok * s.n_out), yr(s.n_tok * s.n_out);
      matmul_with(*avx2, wv, x.data(), s.n_tok, ya.data(), nullptr);
      matmul_with(ref, wv, x.data(), s.n_tok, yr.data(), nullptr);
      const auto mag = magnitude(t, dequantize_all(t, w, s), x, s);
      int bad = 0;
      for (size_t i = 0; i < ya.size() && bad < 3; ++i)
        if (!(std::fabs(double(ya[i]) - yr[i]) <= 2e-6 * mag[i])) {
          ADD_FAILURE() << "out " << i << ": avx2 " << ya[i] << " ref " << yr[i] << " mag " << mag[i];
          ++bad;
        }
      // vec_dot entries: first token, every row, through the partner format.
      std::vector<uint8_t> xq(partner_row_bytes(t, s.n_in) + 64);
      uint8_t* pq = xq.data() + (64 - reinterpret_cast<uintptr_t>(xq.data()) % 64) % 64;
      const void* xrow = x.data();
      if (partner_of(t) == Partner::kQ8A) {
        ref.quantize_q8a(x.data(), s.n_in, pq, q8a_mode_of(t));
        xrow = pq;
      } else if (partner_of(t) == Partner::kQ8K) {
        ref.quantize_q8k(x.data(), s.n_in, pq);
        xrow = pq;
      }
      const size_t rb = row_bytes(t, s.n_in);
      for (int64_t o = 0; o < s.n_out; ++o) {
        const float a = avx2->of(t).vec_dot(s.n_in, w.data() + o * rb, xrow);
        const float r = ref.of(t).vec_dot(s.n_in, w.data() + o * rb, xrow);
        ASSERT_LE(std::fabs(double(a) - r), 2e-6 * mag[o]) << "vec_dot row " << o;
        ASSERT_EQ(a, ya[o]) << "vec_dot and matmul differ, row " << o;  // same tile code
      }
    }
  }
}

// The AVX-512 VNNI kernels give bitwise the AVX2 kernels' results (the same integer block
// sums and the same f32 sequence per output), for every type, shape, token count and both
// layouts; so every parity bound measured with AVX2 holds for them unchanged.
TEST(QuantKernels, Avx512EqualsAvx2) {
  const KernelTable* avx512 = kernels_avx512();
  const KernelTable* avx2 = kernels_avx2();
  if (!avx512 || !avx2) GTEST_SKIP() << "CPU has no AVX-512 VNNI";
  EXPECT_STREQ(avx512->isa, "avx512vnni");
  std::mt19937 rng(43);
  int n_checked = 0;
  for (DType t : kSupported) {
    for (const Shape& s : shapes(t)) {
      SCOPED_TRACE(std::string(type_name(t)) + " n_out=" + std::to_string(s.n_out) + " n_in=" +
                   std::to_string(s.n_in) + " n_tok=" + std::to_string(s.n_tok));
      const auto w = random_weights(t, s.n_out, s.n_in, rng);
      const auto x = random_acts(s.n_tok * s.n_in, rng);
      const WeightView wv{t, s.n_in, s.n_out, w.data()};
      std::vector<float> ya(s.n_tok * s.n_out), yb(s.n_tok * s.n_out, 1.f);
      matmul_with(*avx2, wv, x.data(), s.n_tok, ya.data(), nullptr);
      matmul_with(*avx512, wv, x.data(), s.n_tok, yb.data(), nullptr);
      ASSERT_EQ(std::memcmp(ya.data(), yb.data(), 4 * ya.size()), 0);
      if (avx512->of(t).gemm_i) {
        std::vector<uint8_t> buf(w.size());
        const WeightView il = interleave_rows(wv, buf.data(), avx512->of(t).group);
        std::fill(yb.begin(), yb.end(), 1.f);
        matmul_with(*avx512, il, x.data(), s.n_tok, yb.data(), nullptr);
        ASSERT_EQ(std::memcmp(ya.data(), yb.data(), 4 * ya.size()), 0) << "interleaved";
      }
      ++n_checked;
    }
  }
  // Saturation edge: Q8_0 quants of -128 (|q| = 128 after the sign trick) against full-scale
  // activations, where a wrong dot product would show.
  {
    const int64_t n_in = 256, n_out = 8, n_tok = 5;
    std::vector<uint8_t> w(row_bytes(DType::Q8_0, n_in) * n_out);
    for (size_t b = 0; b < w.size(); b += 34) {
      const uint16_t one = 0x3c00;
      std::memcpy(&w[b], &one, 2);
      for (int j = 0; j < 32; ++j) w[b + 2 + j] = static_cast<uint8_t>(j % 3 == 0 ? 0x80 : (j % 3 == 1 ? 127 : 0x81));
    }
    std::vector<float> x(n_tok * n_in);
    for (size_t i = 0; i < x.size(); ++i) x[i] = (i % 2 ? 1.f : -1.f);
    const WeightView wv{DType::Q8_0, n_in, n_out, w.data()};
    std::vector<float> ya(n_tok * n_out), yb(n_tok * n_out), yr(n_tok * n_out);
    matmul_with(*avx2, wv, x.data(), n_tok, ya.data(), nullptr);
    matmul_with(*avx512, wv, x.data(), n_tok, yb.data(), nullptr);
    matmul_with(kernels_reference(), wv, x.data(), n_tok, yr.data(), nullptr);
    EXPECT_EQ(std::memcmp(ya.data(), yb.data(), 4 * ya.size()), 0);
    for (size_t i = 0; i < yr.size(); ++i) EXPECT_NEAR(yb[i], yr[i], 1e-3f * std::fabs(yr[i]) + 1e-3f) << i;
  }
  EXPECT_GT(n_checked, 20);
}

// Thread count and batch composition do not change a single bit of the output.
TEST(QuantKernels, ThreadAndBatchInvariance) {
  ThreadPool pool(2);
  std::mt19937 rng(3);
  for (DType t : kSupported) {
    SCOPED_TRACE(type_name(t));
    const int64_t n_in = type_info(t).block_size == 256 ? 512 : 576, n_out = 257, n_tok = 17;
    const auto w = random_weights(t, n_out, n_in, rng);
    const auto x = random_acts(n_tok * n_in, rng);
    const WeightView wv{t, n_in, n_out, w.data()};
    std::vector<float> y1(n_tok * n_out), y2(n_tok * n_out), yt(n_out);
    matmul(wv, x.data(), n_tok, y1.data(), nullptr);
    matmul(wv, x.data(), n_tok, y2.data(), &pool);
    EXPECT_EQ(std::memcmp(y1.data(), y2.data(), 4 * y1.size()), 0) << "1 vs 2 threads";
    for (int64_t it : {0, 5, 16}) {
      matmul(wv, x.data() + it * n_in, 1, yt.data(), &pool);
      EXPECT_EQ(std::memcmp(yt.data(), y1.data() + it * n_out, 4 * n_out), 0) << "token " << it << " alone";
    }
  }
}

// The interleaved decode layout gives bitwise the row-major results (decode and prefill,
// 1 and 2 threads, row counts with and without a row-major tail, inside matmul_multi), and
// get_row reads every row back; a kernel table that cannot read it refuses it.
TEST(QuantKernels, InterleavedLayoutEqualsRowMajor) {
  ThreadPool pool(2);
  std::mt19937 rng(11);
  int n_types = 0;
  for (DType t : kSupported) {
    const int group = interleave_group(t);
    if (!group) continue;
    ++n_types;
    SCOPED_TRACE(type_name(t));
    const int64_t n_in = type_info(t).block_size == 256 ? 768 : 576;
    for (int64_t n_out : {4, 7, 16, 64, 258}) {
      SCOPED_TRACE("n_out " + std::to_string(n_out));
      const auto w = random_weights(t, n_out, n_in, rng);
      const WeightView rows{t, n_in, n_out, w.data()};
      std::vector<uint8_t> buf(w.size());
      const WeightView il = interleave_rows(rows, buf.data(), group);
      ASSERT_EQ(il.interleave, group);
      if (n_out >= group) {
        EXPECT_NE(std::memcmp(buf.data(), w.data(), w.size()), 0) << "layout unchanged";
      }
      std::vector<float> ra(n_in), rb(n_in);
      for (int64_t r = 0; r < n_out; ++r) {
        get_row(rows, r, ra.data());
        get_row(il, r, rb.data());
        ASSERT_EQ(std::memcmp(ra.data(), rb.data(), 4 * n_in), 0) << "row " << r;
      }
      for (int64_t n_tok : {1, 5, 70})
        for (ThreadPool* p : {static_cast<ThreadPool*>(nullptr), &pool}) {
          const auto x = random_acts(n_tok * n_in, rng);
          std::vector<float> ya(n_tok * n_out), yb(n_tok * n_out, 1.f);
          matmul(rows, x.data(), n_tok, ya.data(), p);
          matmul(il, x.data(), n_tok, yb.data(), p);
          ASSERT_EQ(std::memcmp(ya.data(), yb.data(), 4 * ya.size()), 0) << "n_tok " << n_tok;
          const WeightView both[2] = {il, rows};
          std::vector<float> y0(n_tok * n_out), y1(n_tok * n_out);
          float* yp[2] = {y0.data(), y1.data()};
          matmul_multi(both, 2, x.data(), n_tok, yp, p);
          ASSERT_EQ(std::memcmp(ya.data(), y0.data(), 4 * ya.size()), 0) << "multi, n_tok " << n_tok;
        }
      const auto x = random_acts(n_in, rng);
      std::vector<float> y(n_out);
      EXPECT_THROW(matmul_with(kernels_reference(), il, x.data(), 1, y.data(), nullptr), Error);
    }
  }
  if (kernels_avx2()) {
    EXPECT_GE(n_types, 5) << "AVX2 reads every 32-element block type interleaved";
  }
  if (active_isa() == Isa::kAvx512Vnni) {
    EXPECT_EQ(interleave_group(DType::Q4_K), 16) << "AVX-512 reads Q4_K in 16-row groups";
  }
}

// Q4_K's row-interleaved layouts (8 rows for AVX2, 16 for AVX-512) give bitwise each table's
// row-major results, whichever table is active: decode and prefill token counts around the
// tile widths, 1 and 2 threads, row counts with and without a row-major tail.
TEST(QuantKernels, Q4KRowGroupsEqualRowMajorInEveryTable) {
  ThreadPool pool(2);
  std::mt19937 rng(17);
  int n_tables = 0;
  for (const KernelTable* k : {kernels_avx2(), kernels_avx512()}) {
    if (!k) continue;
    const TypeKernels& tk = k->of(DType::Q4_K);
    ASSERT_TRUE(tk.gemm_i) << k->isa;
    ASSERT_EQ(tk.group, std::strcmp(k->isa, "avx2") == 0 ? 8 : 16) << k->isa;
    ++n_tables;
    SCOPED_TRACE(k->isa);
    const int64_t n_in = 512;
    for (int64_t n_out : {8, 16, 23, 80}) {
      const auto w = random_weights(DType::Q4_K, n_out, n_in, rng);
      const WeightView rows{DType::Q4_K, n_in, n_out, w.data()};
      std::vector<uint8_t> buf(w.size());
      const WeightView il = interleave_rows(rows, buf.data(), tk.group);
      for (int64_t n_tok : {1, 2, 7, 9, 70})
        for (ThreadPool* p : {static_cast<ThreadPool*>(nullptr), &pool}) {
          const auto x = random_acts(n_tok * n_in, rng);
          std::vector<float> ya(n_tok * n_out), yb(n_tok * n_out, 1.f);
          matmul_with(*k, rows, x.data(), n_tok, ya.data(), p);
          matmul_with(*k, il, x.data(), n_tok, yb.data(), p);
          ASSERT_EQ(std::memcmp(ya.data(), yb.data(), 4 * ya.size()), 0) << "n_out " << n_out << " n_tok " << n_tok;
        }
    }
  }
  if (!kernels_avx2()) GTEST_SKIP() << "CPU has no AVX2";
  EXPECT_GE(n_tables, 1);
}

// matmul_multi (one dispatch for several weights of one input) is bitwise the separate
// matmuls, for mixed partner formats, decode and prefill token counts, with and without
// a pool (n_in = 768: a multiple of both 32 and 256).
TEST(QuantKernels, MatmulMultiEqualsSeparateMatmuls) {
  ThreadPool pool(2);
  std::mt19937 rng(5);
  const int64_t n_in = 768;
  const DType types[] = {DType::Q4_1, DType::Q8_0, DType::Q4_1, DType::F16, DType::Q4_K, DType::Q4_0};
  const int64_t n_outs[] = {257, 64, 17, 33, 48, 1};
  std::vector<std::vector<uint8_t>> ws;
  std::vector<WeightView> wv;
  for (int i = 0; i < 6; ++i) {
    ws.push_back(random_weights(types[i], n_outs[i], n_in, rng));
    wv.push_back(WeightView{types[i], n_in, n_outs[i], ws.back().data()});
  }
  for (int64_t n_tok : {1, 3, 70})
    for (ThreadPool* p : {static_cast<ThreadPool*>(nullptr), &pool})
      for (int n_w : {1, 3, 6}) {
        SCOPED_TRACE("n_tok " + std::to_string(n_tok) + " n_w " + std::to_string(n_w));
        const auto x = random_acts(n_tok * n_in, rng);
        std::vector<std::vector<float>> ya(n_w), yb(n_w);
        std::vector<float*> yp(n_w);
        for (int i = 0; i < n_w; ++i) {
          ya[i].assign(n_tok * n_outs[i], 0.f);
          yb[i].assign(n_tok * n_outs[i], 1.f);
          yp[i] = yb[i].data();
          matmul(wv[i], x.data(), n_tok, ya[i].data(), p);
        }
        matmul_multi(wv.data(), n_w, x.data(), n_tok, yp.data(), p);
        for (int i = 0; i < n_w; ++i)
          EXPECT_EQ(std::memcmp(ya[i].data(), yb[i].data(), 4 * ya[i].size()), 0) << "weight " << i;
      }
}

// The pool's dynamic parallel_for covers [0, n) exactly once per call, including calls
// issued back to back (a worker may still be leaving the previous job), and run() still
// calls every thread once.
TEST(ThreadPoolTest, ParallelForCoversEachIndexOnce) {
  for (int nth : {2, 3}) {
    ThreadPool pool(nth);
    for (int rep = 0; rep < 2000; ++rep) {
      const int64_t n = 1 + rep % 37;
      std::vector<std::atomic<int>> hit(n);
      pool.parallel_for(n, [&](int64_t b, int64_t e, int ith) {
        ASSERT_TRUE(b < e && e <= n && ith >= 0 && ith < nth);
        for (int64_t i = b; i < e; ++i) hit[i].fetch_add(1);
      });
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hit[i].load(), 1) << "n " << n << " index " << i;
      if (rep % 100 == 0) {
        std::vector<std::atomic<int>> ran(nth);
        pool.run([&](int ith, int n_th) {
          ASSERT_EQ(n_th, nth);
          ran[ith].fetch_add(1);
        });
        for (int i = 0; i < nth; ++i) ASSERT_EQ(ran[i].load(), 1);
      }
    }
  }
}

// matmul against f64 dot products of the dequantized weights with the unquantized x.
// Tolerance, per output (activation rounding is the only approximation besides f32 sums):
//   sum over blocks b of amax_b(x) / 254 * sum_{i in b} |w_i|   (|x - d q| <= d / 2, d = amax / 127)
//   + 2^-10 * sum_i |w_i x_i| + 2^-10 * |offset terms|           (fp16 rounding of d and of Q8_1's s)
//   + 1e-5 * magnitude                                           (f32 summation)
// Float weights use f32 activations: 1e-5 * magnitude only.
TEST(QuantKernels, MatmulMatchesDequantizedDot) {
  ThreadPool pool(2);
  std::mt19937 rng(11);
  for (DType t : kSupported) {
    SCOPED_TRACE(type_name(t));
    const int bs = type_info(t).block_size;
    const int64_t n_in = bs == 256 ? 768 : 576, n_out = 33, n_tok = 5;
    const Shape s{n_out, n_in, n_tok};
    const auto w = random_weights(t, n_out, n_in, rng);
    const auto x = random_acts(n_tok * n_in, rng);
    std::vector<float> y(n_tok * n_out);
    matmul(WeightView{t, n_in, n_out, w.data()}, x.data(), n_tok, y.data(), &pool);
    const auto wd = dequantize_all(t, w, s);
    const auto mag = magnitude(t, wd, x, s);
    const int abs_bs = bs == 1 ? 1 : bs;
    double err2 = 0, ref2 = 0, pred2 = 0;
    for (int64_t it = 0; it < n_tok; ++it)
      for (int64_t o = 0; o < n_out; ++o) {
        double want = 0, tol = 1e-5 * mag[it * n_out + o], wx = 0;
        for (int64_t b = 0; b < n_in; b += abs_bs) {
          double amax = 0, wsum = 0;
          for (int64_t i = b; i < b + abs_bs; ++i) {
            const double xi = x[it * n_in + i], wi = wd[o * n_in + i];
            want += wi * xi;
            wx += std::fabs(wi * xi);
            amax = std::max(amax, std::fabs(xi));
            wsum += std::fabs(wi);
          }
          if (bs > 1) tol += amax / 254.0 * wsum;
          // Rounding noise is ~uniform in [-d/2, d/2]: variance d^2/12 per element.
          double w2 = 0;
          for (int64_t i = b; i < b + abs_bs; ++i) w2 += double(wd[o * n_in + i]) * wd[o * n_in + i];
          if (bs > 1) pred2 += (amax / 127) * (amax / 127) / 12 * w2;
        }
        if (bs > 1) tol += std::ldexp(1.0, -10) * (wx + mag[it * n_out + o]);
        const double got = y[it * n_out + o];
        EXPECT_LE(std::fabs(got - want), tol) << "tok " << it << " out " << o;
        err2 += (got - want) * (got - want);
        ref2 += want * want;
      }
    // Typical error is far below the worst case: the summed squared error stays within 3x
    // the uniform-rounding-noise prediction (int8 activations; the 20-sigma outliers in
    // random_acts make it a few percent relative; outputs of one token share their rounding
    // errors, so the sum has few degrees of freedom, hence 3x), and < 1e-6 for float weights.
    if (bs > 1)
      EXPECT_LT(err2, 3.0 * pred2) << "relative L2 error " << std::sqrt(err2 / ref2);
    else
      EXPECT_LT(std::sqrt(err2 / ref2), 1e-6);
  }
}

}  // namespace
}  // namespace kvz

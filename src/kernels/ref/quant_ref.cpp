#include "kernels/ref/quant_ref.h"

#include <cmath>
#include <cstring>
#include <type_traits>

#include "core/fp16.h"

namespace kvz::qref {

namespace {

using namespace kvz::blk;

template <typename B>
const B* blocks(const void* p) {
  return static_cast<const B*>(p);
}

// ---------------------------------------------------------------- dequantization
// Operation order follows gguf-py quants.py so results are bitwise equal to it
// (tests/unit/test_quant.cpp, golden fixtures). This file is built without FMA, so
// `a * b + c` is two rounded operations, as in numpy.

void deq_f32(const void* src, float* dst, int64_t n) { std::memcpy(dst, src, static_cast<size_t>(n) * 4); }

void deq_f16(const void* src, float* dst, int64_t n) {
  const auto* s = static_cast<const uint16_t*>(src);
  for (int64_t i = 0; i < n; ++i) dst[i] = fp16_to_f32(s[i]);
}

void deq_bf16(const void* src, float* dst, int64_t n) {
  const auto* s = static_cast<const uint16_t*>(src);
  for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(s[i]);
}

void deq_q4_0(const void* src, float* dst, int64_t n) {
  const auto* b = blocks<Q4_0>(src);
  for (int64_t ib = 0; ib < n / kQK; ++ib, dst += kQK) {
    const float d = fp16_to_f32(b[ib].d);
    for (int j = 0; j < 16; ++j) {
      dst[j] = d * static_cast<float>((b[ib].qs[j] & 0xF) - 8);
      dst[j + 16] = d * static_cast<float>((b[ib].qs[j] >> 4) - 8);
    }
  }
}

void deq_q4_1(const void* src, float* dst, int64_t n) {
  const auto* b = blocks<Q4_1>(src);
  for (int64_t ib = 0; ib < n / kQK; ++ib, dst += kQK) {
    const float d = fp16_to_f32(b[ib].d), m = fp16_to_f32(b[ib].m);
    for (int j = 0; j < 16; ++j) {
      dst[j] = d * static_cast<float>(b[ib].qs[j] & 0xF) + m;
      dst[j + 16] = d * static_cast<float>(b[ib].qs[j] >> 4) + m;
    }
  }
}

inline uint32_t load_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// q[j] in [0, 31] of a Q5_0 / Q5_1 block.
inline void unpack_q5(const uint8_t* qh4, const uint8_t* qs, int* q) {
  const uint32_t qh = load_u32(qh4);
  for (int j = 0; j < 16; ++j) {
    q[j] = (qs[j] & 0xF) | static_cast<int>(((qh >> j) & 1u) << 4);
    q[j + 16] = (qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1u) << 4);
  }
}

void deq_q5_0(const void* src, float* dst, int64_t n) {
  const auto* b = blocks<Q5_0>(src);
  int q[kQK];
  for (int64_t ib = 0; ib < n / kQK; ++ib, dst += kQK) {
    const float d = fp16_to_f32(b[ib].d);
    unpack_q5(b[ib].qh, b[ib].qs, q);
    for (int j = 0; j < kQK; ++j) dst[j] = d * static_cast<float>(q[j] - 16);
  }
}

void deq_q5_1(const void* src, float* dst, int64_t n) {
  const auto* b = blocks<Q5_1>(src);
  int q[kQK];
  for (int64_t ib = 0; ib < n / kQK; ++ib, dst += kQK) {
    const float d = fp16_to_f32(b[ib].d), m = fp16_to_f32(b[ib].m);
    unpack_q5(b[ib].qh, b[ib].qs, q);
    for (int j = 0; j < kQK; ++j) dst[j] = d * static_cast<float>(q[j]) + m;
  }
}

void deq_q8_0(const void* src, float* dst, int64_t n) {
  const auto* b = blocks<Q8_0>(src);
  for (int64_t ib = 0; ib < n / kQK; ++ib, dst += kQK) {
    const float d = fp16_to_f32(b[ib].d);
    for (int j = 0; j < kQK; ++j) dst[j] = static_cast<float>(b[ib].qs[j]) * d;
  }
}

// q[256] in [0, 31] (Q5_K) or [0, 15] (Q4_K, qh == nullptr) in element order.
inline void unpack_k45(const uint8_t* qs, const uint8_t* qh, int* q) {
  for (int c = 0; c < 4; ++c)
    for (int l = 0; l < 32; ++l) {
      int lo = qs[32 * c + l] & 0xF, hi = qs[32 * c + l] >> 4;
      if (qh) {
        lo |= ((qh[l] >> (2 * c)) & 1) << 4;
        hi |= ((qh[l] >> (2 * c + 1)) & 1) << 4;
      }
      q[64 * c + l] = lo;
      q[64 * c + 32 + l] = hi;
    }
}

template <typename B>
void deq_k45(const void* src, float* dst, int64_t n) {
  const auto* b = blocks<B>(src);
  int q[kQKK];
  for (int64_t ib = 0; ib < n / kQKK; ++ib, dst += kQKK) {
    const float d = fp16_to_f32(b[ib].d), dmin = fp16_to_f32(b[ib].dmin);
    if constexpr (std::is_same_v<B, Q5_K>)
      unpack_k45(b[ib].qs, b[ib].qh, q);
    else
      unpack_k45(b[ib].qs, nullptr, q);
    for (int s = 0; s < 8; ++s) {
      uint8_t sc, m;
      scale_min_k4(s, b[ib].scales, &sc, &m);
      const float ds = d * static_cast<float>(sc), dm = dmin * static_cast<float>(m);
      for (int l = 0; l < 32; ++l) dst[32 * s + l] = ds * static_cast<float>(q[32 * s + l]) - dm;
    }
  }
}

// q[256] in [-32, 31] of a Q6_K super-block, element order.
inline void unpack_q6k(const Q6_K& b, int* q) {
  for (int h = 0; h < 2; ++h) {
    const uint8_t* ql = b.ql + 64 * h;
    const uint8_t* qh = b.qh + 32 * h;
    int* o = q + 128 * h;
    for (int l = 0; l < 32; ++l) {
      o[l] = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
      o[l + 32] = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
      o[l + 64] = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      o[l + 96] = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
    }
  }
}

void deq_q6_k(const void* src, float* dst, int64_t n) {
  const auto* b = blocks<Q6_K>(src);
  int q[kQKK];
  for (int64_t ib = 0; ib < n / kQKK; ++ib, dst += kQKK) {
    const float d = fp16_to_f32(b[ib].d);
    unpack_q6k(b[ib], q);
    for (int k = 0; k < 16; ++k) {
      const float ds = d * static_cast<float>(b[ib].scales[k]);
      for (int l = 0; l < 16; ++l) dst[16 * k + l] = ds * static_cast<float>(q[16 * k + l]);
    }
  }
}

// ---------------------------------------------------------------- dot products

float dot_f32(int64_t n, const void* w, const void* x) {
  const auto* a = static_cast<const float*>(w);
  const auto* b = static_cast<const float*>(x);
  float s = 0;
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

float dot_f16(int64_t n, const void* w, const void* x) {
  const auto* a = static_cast<const uint16_t*>(w);
  const auto* b = static_cast<const float*>(x);
  float s = 0;
  for (int64_t i = 0; i < n; ++i) s += fp16_to_f32(a[i]) * b[i];
  return s;
}

float dot_bf16(int64_t n, const void* w, const void* x) {
  const auto* a = static_cast<const uint16_t*>(w);
  const auto* b = static_cast<const float*>(x);
  float s = 0;
  for (int64_t i = 0; i < n; ++i) s += bf16_to_f32(a[i]) * b[i];
  return s;
}

// The 32-block types: per block an exact integer sum, then ggml's f32 combination
// (ggml-cpu/quants.c ggml_vec_dot_q4_0_q8_0_generic and siblings).
template <typename B>
float dot_q32(int64_t n, const void* w, const void* x) {
  const auto* b = blocks<B>(w);
  const Q8ARow a = q8a_row(x, n);
  float sumf = 0;
  int q[kQK];
  for (int64_t ib = 0; ib < n / kQK; ++ib) {
    const B& blk = b[ib];
    int offset = 0;
    if constexpr (std::is_same_v<B, Q8_0>) {
      for (int j = 0; j < kQK; ++j) q[j] = blk.qs[j];
    } else if constexpr (std::is_same_v<B, Q4_0> || std::is_same_v<B, Q4_1>) {
      for (int j = 0; j < 16; ++j) {
        q[j] = blk.qs[j] & 0xF;
        q[j + 16] = blk.qs[j] >> 4;
      }
      offset = std::is_same_v<B, Q4_0> ? 8 : 0;
    } else {
      unpack_q5(blk.qh, blk.qs, q);
      offset = std::is_same_v<B, Q5_0> ? 16 : 0;
    }
    const int8_t* y = a.qs + ib * kQK;
    int sumi = 0;
    for (int j = 0; j < kQK; ++j) sumi += (q[j] - offset) * y[j];
    const float dd = fp16_to_f32(blk.d) * a.d[ib];
    if constexpr (std::is_same_v<B, Q4_1> || std::is_same_v<B, Q5_1>)
      sumf += dd * static_cast<float>(sumi) + fp16_to_f32(blk.m) * a.s[ib];
    else
      sumf += dd * static_cast<float>(sumi);
  }
  return sumf;
}

template <typename B>
float dot_k45(int64_t n, const void* w, const void* x) {
  const auto* b = blocks<B>(w);
  const auto* a = static_cast<const Q8_K*>(x);
  float sumf = 0;
  int q[kQKK];
  for (int64_t ib = 0; ib < n / kQKK; ++ib) {
    if constexpr (std::is_same_v<B, Q5_K>)
      unpack_k45(b[ib].qs, b[ib].qh, q);
    else
      unpack_k45(b[ib].qs, nullptr, q);
    int sumi = 0, summ = 0;
    for (int s = 0; s < 8; ++s) {
      uint8_t sc, m;
      scale_min_k4(s, b[ib].scales, &sc, &m);
      int si = 0;
      for (int l = 0; l < 32; ++l) si += q[32 * s + l] * a[ib].qs[32 * s + l];
      sumi += sc * si;
      summ += m * (a[ib].bsums[2 * s] + a[ib].bsums[2 * s + 1]);
    }
    const float d = a[ib].d * fp16_to_f32(b[ib].d), dmin = a[ib].d * fp16_to_f32(b[ib].dmin);
    sumf += d * static_cast<float>(sumi) - dmin * static_cast<float>(summ);
  }
  return sumf;
}

float dot_q6_k(int64_t n, const void* w, const void* x) {
  const auto* b = blocks<Q6_K>(w);
  const auto* a = static_cast<const Q8_K*>(x);
  float sumf = 0;
  int q[kQKK];
  for (int64_t ib = 0; ib < n / kQKK; ++ib) {
    unpack_q6k(b[ib], q);
    int sumi = 0;
    for (int k = 0; k < 16; ++k) {
      int si = 0;
      for (int l = 0; l < 16; ++l) si += q[16 * k + l] * a[ib].qs[16 * k + l];
      sumi += b[ib].scales[k] * si;
    }
    sumf += a[ib].d * fp16_to_f32(b[ib].d) * static_cast<float>(sumi);
  }
  return sumf;
}

// Round half to even for |v| < 2^22 without depending on libm or the rounding mode
// (ggml-quants.c nearest_int uses the same trick).
inline int round_even(float v) {
  const float t = v + 12582912.f;
  int32_t i;
  std::memcpy(&i, &t, 4);
  return (i & 0x007fffff) - 0x00400000;
}

}  // namespace

DequantFn dequantizer(DType t) {
  switch (t) {
    case DType::F32: return deq_f32;
    case DType::F16: return deq_f16;
    case DType::BF16: return deq_bf16;
    case DType::Q4_0: return deq_q4_0;
    case DType::Q4_1: return deq_q4_1;
    case DType::Q5_0: return deq_q5_0;
    case DType::Q5_1: return deq_q5_1;
    case DType::Q8_0: return deq_q8_0;
    case DType::Q4_K: return deq_k45<Q4_K>;
    case DType::Q5_K: return deq_k45<Q5_K>;
    case DType::Q6_K: return deq_q6_k;
    default: return nullptr;
  }
}

// ggml-cpu/arch/x86/quants.c quantize_row_q8_0 / q8_1 (the AVX2 branch, which is what
// llama.cpp runs on this class of CPU): d = amax / 127, q = round_half_even(x * (127 / amax)).
void quantize_q8a(const float* x, int64_t n_in, void* dst, Q8AMode mode) {
  auto* qs = static_cast<int8_t*>(dst);
  const int64_t nb = n_in / kQK, nbp = q8a_nbp(n_in);
  auto* d = reinterpret_cast<float*>(qs + nb * kQK);
  float* s = d + nbp;
  for (int64_t ib = 0; ib < nb; ++ib, x += kQK) {
    float amax = 0;
    for (int j = 0; j < kQK; ++j) amax = std::fmax(amax, std::fabs(x[j]));
    const float dv = amax / 127.f;
    const float id = amax != 0.f ? 127.f / amax : 0.f;
    int sum = 0;
    for (int j = 0; j < kQK; ++j) {
      const int q = round_even(x[j] * id);
      qs[ib * kQK + j] = static_cast<int8_t>(q);
      sum += q;
    }
    d[ib] = fp16_to_f32(f32_to_fp16(dv));
    switch (mode) {
      case Q8AMode::kNone: s[ib] = 0; break;
      case Q8AMode::kSumFp16: s[ib] = fp16_to_f32(f32_to_fp16(dv * static_cast<float>(sum))); break;
      case Q8AMode::kSumExact: s[ib] = d[ib] * static_cast<float>(sum); break;
    }
  }
  for (int64_t ib = nb; ib < nbp; ++ib) d[ib] = s[ib] = 0;
}

// ggml-quants.c quantize_row_q8_K_ref.
void quantize_q8k(const float* x, int64_t n_in, void* dst) {
  auto* y = static_cast<Q8_K*>(dst);
  for (int64_t ib = 0; ib < n_in / kQKK; ++ib, x += kQKK) {
    float amax = 0, vmax = 0;
    for (int j = 0; j < kQKK; ++j)
      if (std::fabs(x[j]) > amax) {
        amax = std::fabs(x[j]);
        vmax = x[j];
      }
    if (amax == 0.f) {
      std::memset(&y[ib], 0, sizeof(Q8_K));
      continue;
    }
    const float iscale = -127.f / vmax;
    for (int j = 0; j < kQKK; ++j) {
      const int v = round_even(iscale * x[j]);
      y[ib].qs[j] = static_cast<int8_t>(v < 127 ? v : 127);
    }
    for (int k = 0; k < 16; ++k) {
      int sum = 0;
      for (int l = 0; l < 16; ++l) sum += y[ib].qs[16 * k + l];
      y[ib].bsums[k] = static_cast<int16_t>(sum);
    }
    y[ib].d = 1 / iscale;
  }
}

void fill_table(KernelTable& t) {
  t.isa = "ref";
  t.quantize_q8a = quantize_q8a;
  t.quantize_q8k = quantize_q8k;
  auto set = [&](DType ty, VecDotFn dot, GemmFn gemm) { t.by_type[static_cast<uint32_t>(ty)] = {dot, gemm}; };
  set(DType::F32, dot_f32, gemm_by_vec_dot<dot_f32>);
  set(DType::F16, dot_f16, gemm_by_vec_dot<dot_f16>);
  set(DType::BF16, dot_bf16, gemm_by_vec_dot<dot_bf16>);
  set(DType::Q4_0, dot_q32<Q4_0>, gemm_by_vec_dot<dot_q32<Q4_0>>);
  set(DType::Q4_1, dot_q32<Q4_1>, gemm_by_vec_dot<dot_q32<Q4_1>>);
  set(DType::Q5_0, dot_q32<Q5_0>, gemm_by_vec_dot<dot_q32<Q5_0>>);
  set(DType::Q5_1, dot_q32<Q5_1>, gemm_by_vec_dot<dot_q32<Q5_1>>);
  set(DType::Q8_0, dot_q32<Q8_0>, gemm_by_vec_dot<dot_q32<Q8_0>>);
  set(DType::Q4_K, dot_k45<Q4_K>, gemm_by_vec_dot<dot_k45<Q4_K>>);
  set(DType::Q5_K, dot_k45<Q5_K>, gemm_by_vec_dot<dot_k45<Q5_K>>);
  set(DType::Q6_K, dot_q6_k, gemm_by_vec_dot<dot_q6_k>);
}

}  // namespace kvz::qref

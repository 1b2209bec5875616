#pragma once
// The x86 intrinsics: every kernel file includes them through here, not <immintrin.h>.
//
// gcc 12's avx512fintrin.h starts several intrinsics (_mm512_inserti64x4,
// _mm512_broadcast_i64x4, _mm512_extracti64x4_epi64, ...) from _mm512_undefined_*(), which it
// writes as a variable initialised with itself, and then reports that variable as
// uninitialised in every function the intrinsic is inlined into (gcc bug 105593, fixed in
// gcc 13). The two warnings are switched off for the header's own lines only: a diagnostic
// pragma applies by source location, so our code keeps both warnings.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#else
#include <immintrin.h>
#endif

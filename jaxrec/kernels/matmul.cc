// C = op(A) op(B) in float32 by Intel MKL (linked statically, sequential),
// its rows shared out between the cores.  An XLA FFI handler for the CPU;
// jaxrec/kernels/build.py links it, blas.py calls it.
//
// Each part is one single-threaded sgemm on a share of C's rows; MKL's
// products beat XLA's in the NCF towers at batch 256
// (results/bench_ncf_parts.md).  With bf16_products, A and B are first
// rounded to bfloat16 (to nearest even) and each part is MKL's
// cblas_gemm_bf16bf16f32, which accumulates in float32 and runs on AMX
// tiles where the CPU has them: float32 in and out, bfloat16 products.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#if defined(__AVX512BF16__)
#include <immintrin.h>
#endif

#include "cblas.h"
#include "parallel_for.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

// Below this many FLOPs a product runs on one core: waking a pool thread
// costs more than the split saves (8 MFLOP: a 256 x 128 x 64 product
// gained nothing from two cores).
constexpr int64_t kSplitFlops = int64_t{1} << 23;
// The same for bfloat16 products, much faster on AMX: in a probe on a
// 2-core Xeon, the helper core's part of a 256 x 256 x 256 product took
// longer than the calling core's (its AMX unit waking from idle, we
// think), so two parts took longer than one.
constexpr int64_t kSplitFlopsBf16 = int64_t{1} << 26;

using Matrix = ffi::Buffer<ffi::F32, 2>;

// x rounded to the nearest bfloat16, ties to even; a NaN stays a (quiet)
// NaN rather than carrying into the exponent.
inline uint16_t ToBf16(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  const uint32_t rounded = (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16;
  const bool nan = (bits & 0x7fffffffu) > 0x7f800000u;
  return uint16_t(nan ? (bits >> 16) | 0x40u : rounded);
}

// src[0, n) rounded to bfloat16 into dst[0, n): 32 at a time by
// AVX512-BF16's conversion where the build has it (the same rounding, but
// float32 subnormals become zero), else one at a time.
void RoundToBf16(const float* src, int64_t n, uint16_t* dst) {
  int64_t i = 0;
#if defined(__AVX512BF16__)
  for (; i + 32 <= n; i += 32) {
    const __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(src + i + 16),
                                           _mm512_loadu_ps(src + i));
    _mm512_storeu_si512(dst + i, (__m512i)v);
  }
#endif
  for (; i < n; ++i) dst[i] = ToBf16(src[i]);
}

// The rows [lo, hi) of op(A) (rows of A, or columns of A when it is
// transposed) rounded to bfloat16 into buf; returns their leading
// dimension in buf.
int RoundRows(const float* a, int lda, bool transpose_a, int64_t k,
              int64_t lo, int64_t hi, std::vector<uint16_t>& buf) {
  const int64_t rows = hi - lo;
  buf.resize(rows * k);
  if (!transpose_a) {
    RoundToBf16(a + lo * lda, rows * lda, buf.data());
    return lda;
  }
  for (int64_t r = 0; r < k; ++r) {        // A is (k, m): its columns lo..hi
    RoundToBf16(a + r * lda + lo, rows, buf.data() + r * rows);
  }
  return int(rows);
}

// Rows of C shared out between the cores, one sequential product per part
// on its rows of op(A): rows of A, or columns of A when it is transposed.
// With bf16, each part first rounds its rows of op(A) and all of B to
// bfloat16 in buffers of its own thread: the rounding runs in parallel and
// each part's AMX loads read its own core's cache (in a probe, MKL's
// bfloat16 product on buffers just written by the other core ran several
// times slower than on its own).
void SplitGemm(ffi::ThreadPool& pool, bool transpose_a, bool transpose_b,
               int64_t m, int64_t n, int64_t k, const float* pa, int lda,
               const float* pb, int64_t b_size, int ldb, bool bf16,
               float* out) {
  const int64_t cores = jaxrec::Cores();
  const int64_t split = bf16 ? kSplitFlopsBf16 : kSplitFlops;
  const int64_t parts = 2 * m * n * k < split ? 1 : std::min(cores, m);
  const int ta = transpose_a ? kTrans : kNoTrans;
  const int tb = transpose_b ? kTrans : kNoTrans;
  jaxrec::ParallelFor(pool, parts, [=](int64_t i) {
    const int64_t lo = m * i / parts, hi = m * (i + 1) / parts;
    if (!bf16) {
      cblas_sgemm(kRowMajor, ta, tb, int(hi - lo), int(n), int(k), 1.0f,
                  transpose_a ? pa + lo : pa + lo * lda, lda, pb, ldb, 0.0f,
                  out + lo * n, int(n));
      return;
    }
    thread_local std::vector<uint16_t> a16, b16;
    const int lda16 = RoundRows(pa, lda, transpose_a, k, lo, hi, a16);
    b16.resize(b_size);
    RoundToBf16(pb, b_size, b16.data());
    cblas_gemm_bf16bf16f32(kRowMajor, ta, tb, int(hi - lo), int(n), int(k),
                           1.0f, a16.data(), lda16, b16.data(), ldb, 0.0f,
                           out + lo * n, int(n));
  });
}

ffi::Error MatmulImpl(ffi::ThreadPool pool, Matrix a, Matrix b,
                      ffi::ResultBuffer<ffi::F32, 2> c, bool transpose_a,
                      bool transpose_b, bool bf16_products) {
  const auto ad = a.dimensions(), bd = b.dimensions(), cd = c->dimensions();
  const int64_t m = transpose_a ? ad[1] : ad[0], k = transpose_a ? ad[0] : ad[1];
  const int64_t kb = transpose_b ? bd[1] : bd[0], n = transpose_b ? bd[0] : bd[1];
  if (k != kb || cd[0] != m || cd[1] != n) {
    return ffi::Error::InvalidArgument(
        "op(a) is " + std::to_string(m) + " x " + std::to_string(k) +
        ", op(b) " + std::to_string(kb) + " x " + std::to_string(n) +
        ", c " + std::to_string(cd[0]) + " x " + std::to_string(cd[1]) +
        ": expected (m, k) x (k, n) -> (m, n)");
  }
  constexpr int64_t kMax = std::numeric_limits<int>::max();
  if (ad[0] > kMax || ad[1] > kMax || bd[0] > kMax || bd[1] > kMax) {
    return ffi::Error::InvalidArgument("a dimension exceeds 32-bit BLAS");
  }
  float* out = c->typed_data();
  if (m == 0 || n == 0) return ffi::Error::Success();
  if (k == 0) {
    std::fill_n(out, m * n, 0.0f);
    return ffi::Error::Success();
  }
  SplitGemm(pool, transpose_a, transpose_b, m, n, k, a.typed_data(),
            int(ad[1]), b.typed_data(), bd[0] * bd[1], int(bd[1]),
            bf16_products, out);
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxrecMatmul, MatmulImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<Matrix>()
                                  .Arg<Matrix>()
                                  .Ret<Matrix>()
                                  .Attr<bool>("transpose_a")
                                  .Attr<bool>("transpose_b")
                                  .Attr<bool>("bf16_products"));

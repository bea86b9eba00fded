// C = op(A) op(B) in float32 by Intel MKL's cblas_sgemm (linked statically,
// sequential), its rows shared out between the cores.  An XLA FFI handler
// for the CPU; jaxrec/kernels/build.py links it, blas.py calls it.
//
// Each part is one single-threaded sgemm on a share of C's rows; MKL's
// products beat XLA's in the NCF towers at batch 256
// (results/bench_ncf_parts.md).

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>

#include "parallel_for.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

// The CBLAS prototype, its enums as int (row-major 101, no-trans 111, trans
// 112) and its integers 32-bit (MKL's LP64 interface).
extern "C" void cblas_sgemm(int layout, int trans_a, int trans_b, int m,
                            int n, int k, float alpha, const float* a,
                            int lda, const float* b, int ldb, float beta,
                            float* c, int ldc);

namespace {

constexpr int kRowMajor = 101, kNoTrans = 111, kTrans = 112;

// Below this many FLOPs a product runs on one core: waking a pool thread
// costs more than the split saves (8 MFLOP: a 256 x 128 x 64 product
// gained nothing from two cores).
constexpr int64_t kSplitFlops = int64_t{1} << 23;

using Matrix = ffi::Buffer<ffi::F32, 2>;

ffi::Error MatmulImpl(ffi::ThreadPool pool, Matrix a, Matrix b,
                      ffi::ResultBuffer<ffi::F32, 2> c, bool transpose_a,
                      bool transpose_b) {
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
  const float* pa = a.typed_data();
  const float* pb = b.typed_data();
  const int lda = ad[1], ldb = bd[1];
  const int64_t cores = std::max<int64_t>(1, std::thread::hardware_concurrency());
  const int64_t parts = 2 * m * n * k < kSplitFlops ? 1 : std::min(cores, m);
  // Part i computes rows [lo, hi) of C from the same rows of op(A): rows of
  // A, or columns of A when it is transposed.
  jaxrec::ParallelFor(pool, parts, [=](int64_t i) {
    const int64_t lo = m * i / parts, hi = m * (i + 1) / parts;
    cblas_sgemm(kRowMajor, transpose_a ? kTrans : kNoTrans,
          transpose_b ? kTrans : kNoTrans, int(hi - lo), int(n), int(k), 1.0f,
          transpose_a ? pa + lo : pa + lo * lda, lda, pb, ldb, 0.0f,
          out + lo * n, int(n));
  });
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
                                  .Attr<bool>("transpose_b"));

// The CBLAS prototypes jaxrec's kernels call, from Intel MKL (linked
// statically: jaxrec/kernels/build.py).  Enums as int (row-major 101,
// no-trans 111, trans 112), integers 32-bit (MKL's LP64 interface).
#ifndef JAXREC_KERNELS_CBLAS_H_
#define JAXREC_KERNELS_CBLAS_H_

#include <cstdint>

extern "C" void cblas_sgemm(int layout, int trans_a, int trans_b, int m,
                            int n, int k, float alpha, const float* a,
                            int lda, const float* b, int ldb, float beta,
                            float* c, int ldc);
extern "C" void cblas_gemm_bf16bf16f32(int layout, int trans_a, int trans_b,
                                       int m, int n, int k, float alpha,
                                       const uint16_t* a, int lda,
                                       const uint16_t* b, int ldb, float beta,
                                       float* c, int ldc);

namespace {
constexpr int kRowMajor = 101, kNoTrans = 111, kTrans = 112;
}  // namespace

#endif  // JAXREC_KERNELS_CBLAS_H_

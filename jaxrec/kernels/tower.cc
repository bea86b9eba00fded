// A whole ReLU tower, a_i = relu(a_{i-1} W_i + b_i) for i = 1..L with
// a_0 = x, forward and backward in one kernel call each, its products by
// Intel MKL's sgemm (linked statically, sequential).  XLA FFI handlers for
// the CPU; jaxrec/kernels/build.py links them, tower.py calls them.
//
// Per-layer kernel calls (matmul.cc) split each product over the cores and
// wait for it, nine times a step for a 3-layer tower, with XLA's bias, ReLU
// and mask ops between them.  Here the batch's rows are split once:
//   forward: each core takes its rows through every layer (one wait);
//   backward, phase 1: each core takes its rows of dz_L = g * [a_L > 0]
//     back through every layer, dz_{i-1} = (dz_i W_i^T) * [a_{i-1} > 0],
//     to dx = dz_1 W_1^T, summing its rows of dz_i for db_i (one wait);
//   phase 2: dW_i = a_{i-1}^T dz_i over the whole batch, each core taking
//     a share of dW_i's rows, and db_i the sum of the parts' sums.

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "cblas.h"
#include "parallel_for.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

// Below this many FLOPs (forward) the batch is not split: waking a pool
// thread costs more than the split saves (as kSplitFlops in matmul.cc).
constexpr int64_t kSplitFlops = int64_t{1} << 23;

using Matrix = ffi::Buffer<ffi::F32, 2>;
using Vector = ffi::Buffer<ffi::F32, 1>;

struct Layer {
  const float* w;   // (in, out)
  const float* b;   // (out,)
  int64_t in, out;
};

int64_t Parts(int64_t rows, const std::vector<Layer>& layers) {
  int64_t flops = 0;
  for (const Layer& l : layers) flops += 2 * rows * l.in * l.out;
  const int64_t cores = std::max<int64_t>(1, std::thread::hardware_concurrency());
  return flops < kSplitFlops ? 1 : std::max<int64_t>(1, std::min(cores, rows));
}

// Reads layers from args [first, first + 2L): W_1, b_1, ..., W_L, b_L, and
// checks they chain from width `in`.
ffi::ErrorOr<std::vector<Layer>> ReadLayers(const ffi::RemainingArgs& args,
                                            size_t first, size_t count,
                                            int64_t in) {
  std::vector<Layer> layers;
  for (size_t i = 0; i < count; ++i) {
    auto w = args.get<Matrix>(first + 2 * i);
    auto b = args.get<Vector>(first + 2 * i + 1);
    if (!w.has_error() && !b.has_error()) {
      const auto wd = w->dimensions();
      if (wd[0] == in && b->dimensions()[0] == wd[1]) {
        layers.push_back({w->typed_data(), b->typed_data(), wd[0], wd[1]});
        in = wd[1];
        continue;
      }
    }
    return ffi::Unexpected(ffi::Error::InvalidArgument(
        "layer " + std::to_string(i) + ": expected a float32 kernel (" +
        std::to_string(in) + ", out) and bias (out,)"));
  }
  return layers;
}

// Rows [lo, hi) of x (rows, in_0) through every layer into acts[i].
void ForwardRows(const float* x, const std::vector<Layer>& layers,
                 const std::vector<float*>& acts, int64_t lo, int64_t hi) {
  const float* prev = x;
  for (size_t i = 0; i < layers.size(); ++i) {
    const Layer& l = layers[i];
    float* out = acts[i] + lo * l.out;
    for (int64_t r = lo; r < hi; ++r) {
      std::copy_n(l.b, l.out, out + (r - lo) * l.out);
    }
    cblas_sgemm(kRowMajor, kNoTrans, kNoTrans, int(hi - lo), int(l.out),
                int(l.in), 1.0f, prev + lo * l.in, int(l.in), l.w,
                int(l.out), 1.0f, out, int(l.out));
    for (int64_t j = 0; j < (hi - lo) * l.out; ++j) {
      out[j] = std::max(out[j], 0.0f);
    }
    prev = acts[i];
  }
}

ffi::Error TowerFwdImpl(ffi::ThreadPool pool, Matrix x,
                        ffi::RemainingArgs params, ffi::RemainingRets rets) {
  const int64_t rows = x.dimensions()[0];
  const size_t count = params.size() / 2;
  if (params.size() % 2 || rets.size() != count) {
    return ffi::Error::InvalidArgument(
        "expected x, then a kernel and a bias per layer, and one result per "
        "layer");
  }
  auto layers = ReadLayers(params, 0, count, x.dimensions()[1]);
  if (layers.has_error()) return layers.error();
  std::vector<float*> acts;
  for (size_t i = 0; i < count; ++i) {
    auto a = rets.get<Matrix>(i);
    if (a.has_error()) return a.error();
    acts.push_back((*a)->typed_data());
  }
  if (rows == 0 || count == 0) return ffi::Error::Success();
  const int64_t parts = Parts(rows, *layers);
  jaxrec::ParallelFor(pool, parts, [&](int64_t p) {
    ForwardRows(x.typed_data(), *layers, acts, rows * p / parts,
                rows * (p + 1) / parts);
  });
  return ffi::Error::Success();
}

// Phase 1 for rows [lo, hi): dz_i into dz[i], dx, and the rows' sums of
// dz_i into sums[i] (out_i floats each).
void BackwardRows(const std::vector<Layer>& layers,
                  const std::vector<const float*>& acts, const float* g,
                  const std::vector<float*>& dz, float* dx,
                  const std::vector<float*>& sums, int64_t lo, int64_t hi) {
  const int64_t n = hi - lo;
  for (size_t i = layers.size(); i-- > 0;) {
    const Layer& l = layers[i];
    float* d = dz[i] + lo * l.out;
    const float* a = acts[i] + lo * l.out;
    if (i + 1 == layers.size()) {
      const float* gr = g + lo * l.out;
      for (int64_t j = 0; j < n * l.out; ++j) d[j] = a[j] > 0.0f ? gr[j] : 0.0f;
    } else {
      for (int64_t j = 0; j < n * l.out; ++j) d[j] = a[j] > 0.0f ? d[j] : 0.0f;
    }
    std::fill_n(sums[i], l.out, 0.0f);
    for (int64_t r = 0; r < n; ++r) {
      for (int64_t c = 0; c < l.out; ++c) sums[i][c] += d[r * l.out + c];
    }
    // The gradient into this layer's input: the rows of dz_{i-1} (before
    // its mask), or of dx.
    float* into = i ? dz[i - 1] + lo * l.in : dx + lo * l.in;
    cblas_sgemm(kRowMajor, kNoTrans, kTrans, int(n), int(l.in), int(l.out),
                1.0f, d, int(l.out), l.w, int(l.out), 0.0f, into, int(l.in));
  }
}

ffi::Error TowerBwdImpl(ffi::ThreadPool pool, Matrix x,
                        Matrix g, ffi::RemainingArgs args,
                        ffi::RemainingRets rets) {
  // args: W_1, b_1, ..., W_L, b_L, a_1, ..., a_L; rets: dx, dW_1, db_1, ...
  const int64_t rows = x.dimensions()[0];
  const size_t count = args.size() / 3;
  if (args.size() % 3 || rets.size() != 1 + 2 * count) {
    return ffi::Error::InvalidArgument(
        "expected x, g, a kernel and bias per layer, each layer's output, "
        "and dx plus a kernel and bias gradient per layer");
  }
  auto layers = ReadLayers(args, 0, count, x.dimensions()[1]);
  if (layers.has_error()) return layers.error();
  std::vector<const float*> acts;
  std::vector<float*> dws, dbs;
  for (size_t i = 0; i < count; ++i) {
    auto a = args.get<Matrix>(2 * count + i);
    auto dw = rets.get<Matrix>(1 + 2 * i);
    auto db = rets.get<Vector>(2 + 2 * i);
    if (a.has_error() || dw.has_error() || db.has_error()) {
      return ffi::Error::InvalidArgument("layer " + std::to_string(i) +
                                         ": expected float32 buffers");
    }
    acts.push_back(a->typed_data());
    dws.push_back((*dw)->typed_data());
    dbs.push_back((*db)->typed_data());
  }
  auto dx = rets.get<Matrix>(0);
  if (dx.has_error()) return dx.error();
  if (count == 0) {
    std::copy_n(g.typed_data(), rows * x.dimensions()[1], (*dx)->typed_data());
    return ffi::Error::Success();
  }
  const int64_t parts = Parts(rows, *layers);
  // Scratch: every layer's dz (rows, out_i), and each part's column sums.
  int64_t width = 0;
  for (const Layer& l : *layers) width += l.out;
  thread_local std::vector<float> scratch;
  scratch.resize(size_t(width * (rows + parts)));
  std::vector<float*> dz;
  std::vector<std::vector<float*>> sums(parts);
  float* at = scratch.data();
  for (const Layer& l : *layers) { dz.push_back(at); at += rows * l.out; }
  for (int64_t p = 0; p < parts; ++p) {
    for (const Layer& l : *layers) { sums[p].push_back(at); at += l.out; }
  }
  jaxrec::ParallelFor(pool, parts, [&](int64_t p) {
    BackwardRows(*layers, acts, g.typed_data(), dz, (*dx)->typed_data(),
                 sums[p], rows * p / parts, rows * (p + 1) / parts);
  });
  // Phase 2: items (layer, share of dW's rows), in layer order: the first
  // layer, in a halving tower the widest, is claimed first.
  jaxrec::ParallelFor(pool, int64_t(count) * parts, [&](int64_t item) {
    const size_t i = size_t(item / parts);
    const int64_t p = item % parts;
    const Layer& l = (*layers)[i];
    const int64_t lo = l.in * p / parts, hi = l.in * (p + 1) / parts;
    const float* a = i ? acts[i - 1] : x.typed_data();
    cblas_sgemm(kRowMajor, kTrans, kNoTrans, int(hi - lo), int(l.out),
                int(rows), 1.0f, a + lo, int(l.in), dz[i], int(l.out), 0.0f,
                dws[i] + lo * l.out, int(l.out));
    if (p == 0) {
      std::copy_n(sums[0][i], l.out, dbs[i]);
      for (int64_t q = 1; q < parts; ++q) {
        for (int64_t c = 0; c < l.out; ++c) dbs[i][c] += sums[q][i][c];
      }
    }
  });
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxrecTowerFwd, TowerFwdImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<Matrix>()
                                  .RemainingArgs()
                                  .RemainingRets());

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxrecTowerBwd, TowerBwdImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<Matrix>()
                                  .Arg<Matrix>()
                                  .RemainingArgs()
                                  .RemainingRets());

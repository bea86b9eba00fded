// A whole ReLU tower, a_i = relu(a_{i-1} W_i + b_i) for i = 1..L with
// a_0 = x, forward and backward in one kernel call each, its products by
// Intel MKL's sgemm (linked statically, sequential).  XLA FFI handlers for
// the CPU; jaxrec/kernels/build.py links them, tower.py calls them.
//
// Per-layer kernel calls (matmul.cc) split each product over the cores and
// wait for it, nine times a step for a 3-layer tower, with XLA's bias, ReLU
// and mask ops between them.  Here the batch's rows are split once per pass
// and each core keeps to its own rows:
//   forward: each core takes its rows through every layer;
//   backward: each core takes its rows of dz_L = g * [a_L > 0] back through
//     every layer, dz_{i-1} = (dz_i W_i^T) * [a_{i-1} > 0], to dx = dz_1
//     W_1^T, and makes its rows' share of dW_i = a_{i-1}^T dz_i and db_i
//     (the first core into the outputs, the others into scratch); then the
//     shares are summed, the cores taking chunks of dW.
// (A second pass making dW over the whole batch, each core a share of its
// rows, read the other core's rows of dz and was slower.)

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
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

// One core's share of the backward pass's dW_i and db_i (out_i floats).
struct Share {
  std::vector<float*> dw, db;
};

// Rows [lo, hi): dz_i into dz[i], dx, and the rows' share of dW_i and db_i.
void BackwardRows(const std::vector<Layer>& layers, const float* x,
                  const std::vector<const float*>& acts, const float* g,
                  const std::vector<float*>& dz, float* dx,
                  const Share& share, int64_t lo, int64_t hi) {
  const int64_t n = hi - lo;
  for (size_t i = layers.size(); i-- > 0;) {
    const Layer& l = layers[i];
    float* d = dz[i] + lo * l.out;
    const float* a = acts[i] + lo * l.out;
    // dz_i: the incoming gradient (g, or dz_{i+1} W_{i+1}^T written here by
    // the layer above) where the unit was live.
    const float* in = i + 1 == layers.size() ? g + lo * l.out : d;
    for (int64_t j = 0; j < n * l.out; ++j) d[j] = a[j] > 0.0f ? in[j] : 0.0f;
    float* db = share.db[i];
    std::fill_n(db, l.out, 0.0f);
    for (int64_t r = 0; r < n; ++r) {
      for (int64_t c = 0; c < l.out; ++c) db[c] += d[r * l.out + c];
    }
    const float* below = i ? acts[i - 1] + lo * l.in : x + lo * l.in;
    cblas_sgemm(kRowMajor, kTrans, kNoTrans, int(l.in), int(l.out), int(n),
                1.0f, below, int(l.in), d, int(l.out), 0.0f, share.dw[i],
                int(l.out));
    // The gradient into this layer's input: rows of dz_{i-1} before its
    // mask, or of dx.
    float* into = i ? dz[i - 1] + lo * l.in : dx + lo * l.in;
    cblas_sgemm(kRowMajor, kNoTrans, kTrans, int(n), int(l.in), int(l.out),
                1.0f, d, int(l.out), l.w, int(l.out), 0.0f, into, int(l.in));
  }
}

// Floats of dW per reduction item.
constexpr int64_t kChunkFloats = 1 << 14;

ffi::Error TowerBwdImpl(ffi::ThreadPool pool, Matrix x, Matrix g,
                        ffi::RemainingArgs args, ffi::RemainingRets rets) {
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
  Share out;
  for (size_t i = 0; i < count; ++i) {
    auto a = args.get<Matrix>(2 * count + i);
    auto dw = rets.get<Matrix>(1 + 2 * i);
    auto db = rets.get<Vector>(2 + 2 * i);
    if (a.has_error() || dw.has_error() || db.has_error()) {
      return ffi::Error::InvalidArgument("layer " + std::to_string(i) +
                                         ": expected float32 buffers");
    }
    acts.push_back(a->typed_data());
    out.dw.push_back((*dw)->typed_data());
    out.db.push_back((*db)->typed_data());
  }
  auto dx = rets.get<Matrix>(0);
  if (dx.has_error()) return dx.error();
  if (count == 0) {
    std::copy_n(g.typed_data(), rows * x.dimensions()[1], (*dx)->typed_data());
    return ffi::Error::Success();
  }
  const int64_t parts = Parts(rows, *layers);
  // Scratch: every layer's dz (rows, out_i), and the shares of parts 1..
  int64_t width = 0, weights = 0;
  for (const Layer& l : *layers) { width += l.out; weights += l.in * l.out; }
  thread_local std::vector<float> scratch;
  scratch.resize(size_t(rows * width + (parts - 1) * (weights + width)));
  float* at = scratch.data();
  std::vector<float*> dz;
  for (const Layer& l : *layers) { dz.push_back(at); at += rows * l.out; }
  std::vector<Share> shares{out};
  for (int64_t p = 1; p < parts; ++p) {
    Share share;
    for (const Layer& l : *layers) {
      share.dw.push_back(at); at += l.in * l.out;
      share.db.push_back(at); at += l.out;
    }
    shares.push_back(std::move(share));
  }
  jaxrec::ParallelFor(pool, parts, [&](int64_t p) {
    BackwardRows(*layers, x.typed_data(), acts, g.typed_data(), dz,
                 (*dx)->typed_data(), shares[p], rows * p / parts,
                 rows * (p + 1) / parts);
  });
  if (parts == 1) return ffi::Error::Success();
  std::vector<std::pair<size_t, int64_t>> chunks;   // (layer, first float)
  for (size_t i = 0; i < count; ++i) {
    const Layer& l = (*layers)[i];
    for (int64_t j = 0; j < l.in * l.out; j += kChunkFloats) chunks.push_back({i, j});
  }
  jaxrec::ParallelFor(pool, int64_t(chunks.size()), [&](int64_t c) {
    const auto [i, lo] = chunks[c];
    const Layer& l = (*layers)[i];
    const int64_t hi = std::min(lo + kChunkFloats, l.in * l.out);
    for (int64_t p = 1; p < parts; ++p) {
      const float* from = shares[p].dw[i];
      for (int64_t j = lo; j < hi; ++j) out.dw[i][j] += from[j];
      if (lo == 0) {
        for (int64_t k = 0; k < l.out; ++k) out.db[i][k] += shares[p].db[i][k];
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

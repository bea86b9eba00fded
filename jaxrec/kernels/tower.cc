// A whole ReLU tower, a_i = relu(a_{i-1} W_i + b_i) for i = 1..L with
// a_0 = x, forward and backward in one kernel call each, its products by
// Intel MKL's sgemm (linked statically, sequential).  XLA FFI handlers for
// the CPU; jaxrec/kernels/build.py links them, tower.py calls them.
//
// x comes as blocks of columns, x = [x_1 | ... | x_B] (e.g. a user's and an
// item's embedding rows), never concatenated: a_1 sums x_b W_1[b's rows],
// and the backward pass writes each block's dx_b apart.
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
// Floats of dW per item when the cores' shares are summed.
constexpr int64_t kChunkFloats = 1 << 14;

using Matrix = ffi::Buffer<ffi::F32, 2>;
using Vector = ffi::Buffer<ffi::F32, 1>;

struct Layer {
  const float* w;   // (in, out)
  const float* b;   // (out,)
  int64_t in, out;
};

// Columns [offset, offset + width) of a layer's (rows, in) input or its
// gradient; they meet W's rows [offset, offset + width).
struct Block {
  const float* x;   // (rows, width)
  int64_t width, offset;
};

int64_t Parts(int64_t rows, const std::vector<Layer>& layers) {
  int64_t flops = 0;
  for (const Layer& l : layers) flops += 2 * rows * l.in * l.out;
  const int64_t cores = jaxrec::Cores();
  return flops < kSplitFlops ? 1 : std::max<int64_t>(1, std::min(cores, rows));
}

// The tower's input blocks from args [0, count), each (rows, width).
ffi::ErrorOr<std::vector<Block>> ReadBlocks(const ffi::RemainingArgs& args,
                                            size_t count, int64_t rows) {
  std::vector<Block> blocks;
  int64_t offset = 0;
  for (size_t i = 0; i < count; ++i) {
    auto x = args.get<Matrix>(i);
    if (x.has_error() || x->dimensions()[0] != rows) {
      return ffi::Unexpected(ffi::Error::InvalidArgument(
          "input block " + std::to_string(i) + ": expected float32 (" +
          std::to_string(rows) + ", width)"));
    }
    const int64_t width = x->dimensions()[1];
    blocks.push_back({x->typed_data(), width, offset});
    offset += width;
  }
  return blocks;
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

// Rows [lo, hi) through every layer into acts[i] (rows, out_i).
void ForwardRows(const std::vector<Block>& inputs,
                 const std::vector<Layer>& layers,
                 const std::vector<float*>& acts, int64_t lo, int64_t hi) {
  const int64_t n = hi - lo;
  for (size_t i = 0; i < layers.size(); ++i) {
    const Layer& l = layers[i];
    float* out = acts[i] + lo * l.out;
    for (int64_t r = 0; r < n; ++r) std::copy_n(l.b, l.out, out + r * l.out);
    const std::vector<Block> below =
        i ? std::vector<Block>{{acts[i - 1], l.in, 0}} : inputs;
    for (const Block& x : below) {
      cblas_sgemm(kRowMajor, kNoTrans, kNoTrans, int(n), int(l.out),
                  int(x.width), 1.0f, x.x + lo * x.width, int(x.width),
                  l.w + x.offset * l.out, int(l.out), 1.0f, out, int(l.out));
    }
    for (int64_t j = 0; j < n * l.out; ++j) out[j] = std::max(out[j], 0.0f);
  }
}

ffi::Error TowerFwdImpl(ffi::ThreadPool pool, ffi::RemainingArgs args,
                        ffi::RemainingRets rets, int64_t num_blocks) {
  // args: x_1, ..., x_B, W_1, b_1, ..., W_L, b_L; rets: a_1, ..., a_L.
  const size_t count = (args.size() - size_t(num_blocks)) / 2;
  if (num_blocks < 1 || args.size() < size_t(num_blocks) ||
      (args.size() - num_blocks) % 2 || rets.size() != count) {
    return ffi::Error::InvalidArgument(
        "expected num_blocks input blocks, then a kernel and a bias per "
        "layer, and one result per layer");
  }
  auto first = args.get<Matrix>(0);
  if (first.has_error()) return first.error();
  const int64_t rows = first->dimensions()[0];
  auto inputs = ReadBlocks(args, num_blocks, rows);
  if (inputs.has_error()) return inputs.error();
  const int64_t width = inputs->back().offset + inputs->back().width;
  auto layers = ReadLayers(args, num_blocks, count, width);
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
    ForwardRows(*inputs, *layers, acts, rows * p / parts,
                rows * (p + 1) / parts);
  });
  return ffi::Error::Success();
}

// One core's share of the backward pass's dW_i and db_i (out_i floats).
struct Share {
  std::vector<float*> dw, db;
};

// Rows [lo, hi): dz_i into dz[i], each dx_b into dxs[b] (rows, width_b),
// and the rows' share of dW_i and db_i.
void BackwardRows(const std::vector<Block>& inputs,
                  const std::vector<float*>& dxs,
                  const std::vector<Layer>& layers,
                  const std::vector<const float*>& acts, const float* g,
                  const std::vector<float*>& dz, const Share& share,
                  int64_t lo, int64_t hi) {
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
    // Per block of the layer's input: its share of dW_i's rows, and the
    // gradient into it (rows of dz_{i-1} before its mask, or of dx_b).
    const std::vector<Block> below =
        i ? std::vector<Block>{{acts[i - 1], l.in, 0}} : inputs;
    for (size_t k = 0; k < below.size(); ++k) {
      const Block& x = below[k];
      float* into = i ? dz[i - 1] : dxs[k];
      cblas_sgemm(kRowMajor, kTrans, kNoTrans, int(x.width), int(l.out),
                  int(n), 1.0f, x.x + lo * x.width, int(x.width), d,
                  int(l.out), 0.0f, share.dw[i] + x.offset * l.out,
                  int(l.out));
      cblas_sgemm(kRowMajor, kNoTrans, kTrans, int(n), int(x.width),
                  int(l.out), 1.0f, d, int(l.out), l.w + x.offset * l.out,
                  int(l.out), 0.0f, into + lo * x.width, int(x.width));
    }
  }
}

ffi::Error TowerBwdImpl(ffi::ThreadPool pool, ffi::RemainingArgs args,
                        ffi::RemainingRets rets, int64_t num_blocks) {
  // args: x_1, ..., x_B, g, W_1, b_1, ..., W_L, b_L, a_1, ..., a_L;
  // rets: dx_1, ..., dx_B, dW_1, db_1, ..., dW_L, db_L.
  const size_t rest = args.size() - std::min(args.size(), size_t(num_blocks) + 1);
  const size_t count = rest / 3;
  if (num_blocks < 1 || args.size() < size_t(num_blocks) + 1 || rest % 3 ||
      rets.size() != size_t(num_blocks) + 2 * count) {
    return ffi::Error::InvalidArgument(
        "expected num_blocks input blocks, g, a kernel and bias per layer, "
        "each layer's output, and each block's dx plus a kernel and bias "
        "gradient per layer");
  }
  auto first = args.get<Matrix>(0);
  auto g = args.get<Matrix>(num_blocks);
  if (first.has_error()) return first.error();
  if (g.has_error()) return g.error();
  const int64_t rows = first->dimensions()[0];
  auto inputs = ReadBlocks(args, num_blocks, rows);
  if (inputs.has_error()) return inputs.error();
  const int64_t width = inputs->back().offset + inputs->back().width;
  auto layers = ReadLayers(args, num_blocks + 1, count, width);
  if (layers.has_error()) return layers.error();
  if (count == 0) {
    return ffi::Error::InvalidArgument("a tower of no layers has no kernel");
  }
  std::vector<const float*> acts;
  Share out;
  for (size_t i = 0; i < count; ++i) {
    auto a = args.get<Matrix>(num_blocks + 1 + 2 * count + i);
    auto dw = rets.get<Matrix>(num_blocks + 2 * i);
    auto db = rets.get<Vector>(num_blocks + 2 * i + 1);
    if (a.has_error() || dw.has_error() || db.has_error()) {
      return ffi::Error::InvalidArgument("layer " + std::to_string(i) +
                                         ": expected float32 buffers");
    }
    acts.push_back(a->typed_data());
    out.dw.push_back((*dw)->typed_data());
    out.db.push_back((*db)->typed_data());
  }
  std::vector<float*> dxs;
  for (int64_t b = 0; b < num_blocks; ++b) {
    auto dx = rets.get<Matrix>(b);
    if (dx.has_error()) return dx.error();
    dxs.push_back((*dx)->typed_data());
  }
  const int64_t parts = Parts(rows, *layers);
  // Scratch: every layer's dz (rows, out_i), and the shares of parts 1..
  int64_t outs = 0, weights = 0;
  for (const Layer& l : *layers) { outs += l.out; weights += l.in * l.out; }
  thread_local std::vector<float> scratch;
  scratch.resize(size_t(rows * outs + (parts - 1) * (weights + outs)));
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
    BackwardRows(*inputs, dxs, *layers, acts, g->typed_data(), dz, shares[p],
                 rows * p / parts, rows * (p + 1) / parts);
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
                                  .RemainingArgs()
                                  .RemainingRets()
                                  .Attr<int64_t>("num_blocks"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxrecTowerBwd, TowerBwdImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .RemainingArgs()
                                  .RemainingRets()
                                  .Attr<int64_t>("num_blocks"));

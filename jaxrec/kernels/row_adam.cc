// Exact dense Adam for embedding tables whose gradient is zero outside the
// rows a batch touched: one pass over each table's parameter and moments,
// reading the touched rows' gradients through a slot index that the kernel
// builds from the looked-up ids (repeated ids' gradients summed).  An XLA
// FFI handler for the CPU; jaxrec/kernels/adam.py builds and calls it.
//
// Per element, with g = 0 on untouched rows (PyTorch's form of Adam):
//   m <- (1 - b1) g + b1 m
//   v <- (1 - b2) g^2 + b2 v
//   p <- p + step * m / (sqrt(v) * inv_sqrt_bc2 + eps)
// where step = -lr / (1 - b1^t) and inv_sqrt_bc2 = 1 / sqrt(1 - b2^t).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "parallel_for.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

struct Table {
  float* p;
  float* m;
  float* v;
  // (rows,): row r's gradient is g[slot[r]] where slot[r] >= 0, the summed
  // row repeats[-2 - slot[r]] where slot[r] <= -2, and 0 where -1.
  const int32_t* slot;
  const float* g;        // (n, dim): each lookup's row gradient
  const float* repeats;  // rows looked up more than once, their sum
  int64_t rows, dim;
};

struct Coeffs {
  float c1, b1, c2, b2, step, inv_sqrt_bc2, eps;
};

void Row(const Coeffs& c, float* p, float* m, float* v, int64_t dim) {
  for (int64_t j = 0; j < dim; ++j) {
    const float mj = c.b1 * m[j];
    const float vj = c.b2 * v[j];
    m[j] = mj;
    v[j] = vj;
    p[j] += c.step * mj / (std::sqrt(vj) * c.inv_sqrt_bc2 + c.eps);
  }
}

void RowWithGrad(const Coeffs& c, float* p, float* m, float* v,
                 const float* g, int64_t dim) {
  for (int64_t j = 0; j < dim; ++j) {
    const float mj = c.c1 * g[j] + c.b1 * m[j];
    const float vj = c.c2 * (g[j] * g[j]) + c.b2 * v[j];
    m[j] = mj;
    v[j] = vj;
    p[j] += c.step * mj / (std::sqrt(vj) * c.inv_sqrt_bc2 + c.eps);
  }
}

void Rows(const Coeffs& c, const Table& t, int64_t lo, int64_t hi) {
  for (int64_t r = lo; r < hi; ++r) {
    const int64_t at = r * t.dim;
    const int32_t s = t.slot[r];
    if (s == -1) {
      Row(c, t.p + at, t.m + at, t.v + at, t.dim);
    } else {
      const float* g = s >= 0 ? t.g + s * t.dim : t.repeats + (-2 - s) * t.dim;
      RowWithGrad(c, t.p + at, t.m + at, t.v + at, g, t.dim);
    }
  }
}

// Fills slot (rows,) from the n looked-up ids, summing the gradients of
// ids looked up more than once into repeats (grown as needed); ids outside
// [0, rows) are dropped, as XLA's scatter drops them.  Ids looked up once
// read g in place, so a dense parameter (ids 0 .. rows-1) is one pass over
// its ids.
void Slots(const int32_t* ids, const float* g, int64_t n, int64_t rows,
           int64_t dim, int32_t* slot, std::vector<float>& repeats) {
  std::fill_n(slot, rows, -1);
  repeats.clear();
  for (int64_t i = 0; i < n; ++i) {
    const int32_t id = ids[i];
    if (id < 0 || id >= rows) continue;
    const int32_t s = slot[id];
    if (s == -1) {
      slot[id] = int32_t(i);
      continue;
    }
    if (s >= 0) {                    // a second lookup: start a summed row
      const int64_t at = int64_t(repeats.size());
      repeats.insert(repeats.end(), g + s * dim, g + (s + 1) * dim);
      slot[id] = int32_t(-2 - at / dim);
    }
    float* sum = repeats.data() + (-2 - slot[id]) * dim;
    for (int64_t j = 0; j < dim; ++j) sum[j] += g[i * dim + j];
  }
}

// Chunks of rows, shared out by ParallelFor.
constexpr int64_t kChunkFloats = 1 << 15;

void RunAll(ffi::ThreadPool& pool, const Coeffs& c,
            const std::vector<Table>& tables) {
  std::vector<std::pair<int64_t, int64_t>> chunks;  // (table, first row)
  std::vector<int64_t> chunk_rows;                  // per table
  for (size_t k = 0; k < tables.size(); ++k) {
    const Table& t = tables[k];
    chunk_rows.push_back(std::max<int64_t>(1, kChunkFloats / std::max<int64_t>(1, t.dim)));
    for (int64_t r = 0; r < t.rows; r += chunk_rows[k]) chunks.push_back({int64_t(k), r});
  }
  jaxrec::ParallelFor(pool, chunks.size(), [&](int64_t i) {
    const auto [k, lo] = chunks[i];
    const Table& t = tables[k];
    Rows(c, t, lo, std::min(t.rows, lo + chunk_rows[k]));
  });
}

ffi::Error RowAdamImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> scalars,
                       ffi::RemainingArgs args, ffi::RemainingRets rets,
                       double b1, double b2, double eps) {
  if (scalars.element_count() != 2) {
    return ffi::Error::InvalidArgument("scalars must be (step, inv_sqrt_bc2)");
  }
  if (args.size() % 5 || rets.size() * 5 != args.size() * 3) {
    return ffi::Error::InvalidArgument(
        "expected 5 inputs (p, m, v, ids, g) and 3 outputs per table");
  }
  // Per table, on this thread: its slots and summed repeated rows.
  thread_local std::vector<std::vector<int32_t>> slots;
  thread_local std::vector<std::vector<float>> repeats;
  std::vector<Table> tables;
  for (size_t k = 0; k < args.size() / 5; ++k) {
    auto p = args.get<ffi::Buffer<ffi::F32, 2>>(5 * k);
    auto m = args.get<ffi::Buffer<ffi::F32, 2>>(5 * k + 1);
    auto v = args.get<ffi::Buffer<ffi::F32, 2>>(5 * k + 2);
    auto ids = args.get<ffi::Buffer<ffi::S32, 1>>(5 * k + 3);
    auto g = args.get<ffi::Buffer<ffi::F32, 2>>(5 * k + 4);
    auto po = rets.get<ffi::Buffer<ffi::F32, 2>>(3 * k);
    auto mo = rets.get<ffi::Buffer<ffi::F32, 2>>(3 * k + 1);
    auto vo = rets.get<ffi::Buffer<ffi::F32, 2>>(3 * k + 2);
    if (p.has_error() || m.has_error() || v.has_error() || ids.has_error() ||
        g.has_error() || po.has_error() || mo.has_error() || vo.has_error()) {
      return ffi::Error::InvalidArgument(
          "table " + std::to_string(k) + ": expected float32 (rows, dim) p, "
          "m, v, int32 (n,) ids and float32 (n, dim) g");
    }
    const auto dims = p->dimensions();
    const int64_t rows = dims[0], dim = dims[1];
    auto same = [&dims](auto d) { return d[0] == dims[0] && d[1] == dims[1]; };
    if (!same(m->dimensions()) || !same(v->dimensions()) ||
        g->dimensions()[0] != int64_t(ids->element_count()) ||
        g->dimensions()[1] != dim) {
      return ffi::Error::InvalidArgument(
          "table " + std::to_string(k) + ": shapes of p, m, v, ids, g disagree");
    }
    float* out[3] = {(*po)->typed_data(), (*mo)->typed_data(), (*vo)->typed_data()};
    const float* in[3] = {p->typed_data(), m->typed_data(), v->typed_data()};
    for (int i = 0; i < 3; ++i) {
      if (out[i] != in[i]) std::copy_n(in[i], rows * dim, out[i]);
    }
    if (slots.size() <= k) slots.resize(k + 1), repeats.resize(k + 1);
    slots[k].resize(rows);
    Slots(ids->typed_data(), g->typed_data(), g->dimensions()[0], rows, dim,
          slots[k].data(), repeats[k]);
    tables.push_back({out[0], out[1], out[2], slots[k].data(),
                      g->typed_data(), repeats[k].data(), rows, dim});
  }
  const float* s = scalars.typed_data();
  const Coeffs c{static_cast<float>(1.0 - b1), static_cast<float>(b1),
                 static_cast<float>(1.0 - b2), static_cast<float>(b2),
                 s[0], s[1], static_cast<float>(eps)};
  RunAll(pool, c, tables);
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxrecRowAdam, RowAdamImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .RemainingArgs()
                                  .RemainingRets()
                                  .Attr<double>("b1")
                                  .Attr<double>("b2")
                                  .Attr<double>("eps"));

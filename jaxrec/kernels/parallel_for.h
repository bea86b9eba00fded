// Cores (the machine's core count) and ParallelFor (the work items [0, n)
// shared out between the calling thread and XLA's CPU thread pool, one
// thread per core).  Used by every kernel in this directory.
#ifndef JAXREC_KERNELS_PARALLEL_FOR_H_
#define JAXREC_KERNELS_PARALLEL_FOR_H_

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>
#include <utility>

#include "xla/ffi/api/ffi.h"

namespace jaxrec {

// The cores the kernels share work between (at least 1).
inline int64_t Cores() {
  return std::max<int64_t>(1, std::thread::hardware_concurrency());
}

// Items are claimed in turn from a counter.  The job lives on the heap
// because a pool task may start after ParallelFor has returned (when every
// pool thread was busy, e.g. with other devices' kernels under pmap): such
// a late task finds no item left and touches nothing else.  The caller
// works too and waits only for items that running threads have claimed, so
// it never waits on a task that has not started.  fn runs only on items
// claimed before ParallelFor returns, so it may refer to the caller's data.
template <typename Fn>
void ParallelFor(xla::ffi::ThreadPool& pool, int64_t n, Fn fn) {
  struct Job {
    explicit Job(Fn f, int64_t n) : fn(std::move(f)), n(n) {}
    Fn fn;
    const int64_t n;
    std::atomic<int64_t> next{0}, done{0};
    void Work() {
      for (int64_t i; (i = next.fetch_add(1, std::memory_order_relaxed)) < n;) {
        fn(i);
        done.fetch_add(1, std::memory_order_release);
      }
    }
  };
  if (n <= 0) return;
  auto job = std::make_shared<Job>(std::move(fn), n);
  const int64_t cores = Cores();
  const int64_t helpers = std::min<int64_t>({pool.num_threads(), cores - 1, n - 1});
  for (int64_t h = 0; h < helpers; ++h) pool.Schedule([job] { job->Work(); });
  job->Work();
  while (job->done.load(std::memory_order_acquire) < n) std::this_thread::yield();
}

}  // namespace jaxrec

#endif  // JAXREC_KERNELS_PARALLEL_FOR_H_

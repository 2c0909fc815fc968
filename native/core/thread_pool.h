// A fixed pool of worker threads running one parallel_for at a time.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace lro {

class ThreadPool {
 public:
  // n_threads <= 0: number of physical cores.
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }
  // Calls fn(thread_index, begin, end) over [0, n) split into n_threads contiguous chunks
  // (chunk boundaries are multiples of `grain`). The calling thread takes chunk 0. Blocks until done.
  void parallel_for(int64_t n, int64_t grain, const std::function<void(int, int64_t, int64_t)>& fn);
  // Calls fn(thread_index, n_threads) once on every thread.
  void run_on_all(const std::function<void(int, int)>& fn);

  static int physical_cores();

 private:
  void worker(int index);
  int n_threads_;
  std::vector<std::thread> workers_;
  // Workers and the caller spin a while (kSpinMicros) before sleeping on the condition variables: a
  // decode token runs ~50 short parallel_fors, and a futex wake-up costs ~25 us each on a VM.
  // generation_ / pending_ / sleepers_ are seq_cst so that a sleeper and a notifier cannot miss each
  // other (each writes its own flag, then reads the other's).
  std::mutex mu_;
  std::condition_variable cv_start_, cv_done_;
  std::atomic<const std::function<void(int, int)>*> job_{nullptr};
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<int> sleepers_{0};        // workers asleep on cv_start_
  std::atomic<bool> caller_asleep_{false};
  std::atomic<bool> stop_{false};
};

}  // namespace lro

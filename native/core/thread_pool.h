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
  // Runs fn on the pool's own lead thread (which then takes chunk 0 of fn's parallel_fors) and
  // waits for it, rethrowing what it throws; with one thread, or from the lead itself, runs fn here.
  // One caller at a time, as for parallel_for.
  // Callers from a rotating thread pool (Node's libuv workers) should go through this: a new caller
  // thread for each call lands on whichever core the scheduler picks, often the one a worker is
  // spinning on, and a decode token then runs at ~0.8x (measured: 2 threads, 4 rotating callers).
  void run_on_lead(const std::function<void()>& fn);
  // run_on_lead for a function with a (default-constructible) result: returns it.
  template <class F>
  auto call_on_lead(F&& fn) -> decltype(fn()) {
    decltype(fn()) result{};
    run_on_lead([&] { result = fn(); });
    return result;
  }

  static int physical_cores();

 private:
  void worker(int index);
  void lead();
  int n_threads_;
  std::vector<std::thread> workers_;
  std::thread lead_;
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
  // The lead's job, posted as the workers' are (spin, then sleep; seq_cst flags both sides).
  std::mutex lead_mu_;
  std::condition_variable lead_cv_, lead_done_cv_;
  std::atomic<const std::function<void()>*> lead_job_{nullptr};
  std::atomic<uint64_t> lead_posted_{0}, lead_finished_{0};
  std::atomic<bool> lead_asleep_{false}, lead_caller_asleep_{false};
  std::thread::id lead_id_;
};

}  // namespace lro

#include "core/thread_pool.h"

#include <chrono>
#include <exception>
#include <fstream>
#include <set>
#include <string>
#include <utility>

namespace lro {

int ThreadPool::physical_cores() {
  // Count distinct (physical id, core id) pairs; hyperthreads share a core and do not help GEMV.
  std::ifstream in("/proc/cpuinfo");
  std::set<std::pair<int, int>> cores;
  int phys = 0, core = -1;
  std::string line;
  while (std::getline(in, line)) {
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string key = line.substr(0, line.find_last_not_of(" \t", colon - 1) + 1);
    if (key == "physical id") phys = std::stoi(line.substr(colon + 1));
    if (key == "core id") {
      core = std::stoi(line.substr(colon + 1));
      cores.insert({phys, core});
    }
  }
  if (!cores.empty()) return static_cast<int>(cores.size());
  unsigned hw = std::thread::hardware_concurrency();
  return hw > 0 ? static_cast<int>(hw) : 1;
}

ThreadPool::ThreadPool(int n_threads) : n_threads_(n_threads > 0 ? n_threads : physical_cores()) {
  for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { worker(i); });
  if (n_threads_ > 1) {
    lead_ = std::thread([this] { lead(); });
    lead_id_ = lead_.get_id();
  }
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_start_.notify_all();
  for (auto& t : workers_) t.join();
  if (lead_.joinable()) {
    {
      std::lock_guard<std::mutex> lock(lead_mu_);
    }
    lead_cv_.notify_all();  // stop_ is set; taking the lock first means the lead is asleep or sees it
    lead_.join();
  }
}

namespace {

constexpr int64_t kSpinMicros = 200;
// A run_on_lead caller spins this long before sleeping: long enough for a short job to finish
// without a futex round trip, short enough not to hold a core through a long one.
constexpr int64_t kCallerSpinMicros = 50;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// Spins until done() or kSpinMicros have passed; true if done.
template <class Done>
bool spin_until(Done done, int64_t micros = kSpinMicros) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(micros);
  for (int i = 1;; ++i) {
    if (done()) return true;
    cpu_relax();
    if (i % 64 == 0 && std::chrono::steady_clock::now() >= until) return done();
  }
}

}  // namespace

void ThreadPool::worker(int index) {
  uint64_t seen = 0;
  for (;;) {
    auto started = [&] { return stop_ || generation_ != seen; };
    if (!spin_until(started)) {
      std::unique_lock<std::mutex> lock(mu_);
      ++sleepers_;
      cv_start_.wait(lock, started);
      --sleepers_;
    }
    if (stop_) return;
    seen = generation_;
    (*job_.load())(index, n_threads_);
    if (--pending_ == 0 && caller_asleep_) {
      std::lock_guard<std::mutex> lock(mu_);
      cv_done_.notify_one();
    }
  }
}

void ThreadPool::lead() {
  uint64_t seen = 0;
  for (;;) {
    auto posted = [&] { return stop_ || lead_posted_ != seen; };
    if (!spin_until(posted, 0)) {
      std::unique_lock<std::mutex> lock(lead_mu_);
      lead_asleep_ = true;
      lead_cv_.wait(lock, posted);
      lead_asleep_ = false;
    }
    if (stop_) return;
    seen = lead_posted_;
    (*lead_job_.load())();  // run_on_lead's wrapper catches everything
    lead_finished_ = seen;
    if (lead_caller_asleep_) {
      std::lock_guard<std::mutex> lock(lead_mu_);
      lead_done_cv_.notify_one();
    }
  }
}

void ThreadPool::run_on_lead(const std::function<void()>& fn) {
  if (!lead_.joinable() || std::this_thread::get_id() == lead_id_) {
    fn();
    return;
  }
  std::exception_ptr error;
  const std::function<void()> job = [&] {
    try {
      fn();
    } catch (...) {
      error = std::current_exception();
    }
  };
  lead_job_ = &job;
  const uint64_t ticket = ++lead_posted_;
  if (lead_asleep_) {
    std::lock_guard<std::mutex> lock(lead_mu_);
    lead_cv_.notify_one();
  }
  auto finished = [&] { return lead_finished_ == ticket; };
  if (!spin_until(finished, kCallerSpinMicros)) {
    std::unique_lock<std::mutex> lock(lead_mu_);
    lead_caller_asleep_ = true;
    lead_done_cv_.wait(lock, finished);
    lead_caller_asleep_ = false;
  }
  lead_job_ = nullptr;
  if (error) std::rethrow_exception(error);
}

void ThreadPool::run_on_all(const std::function<void(int, int)>& fn) {
  if (n_threads_ == 1) {
    fn(0, 1);
    return;
  }
  job_ = &fn;
  pending_ = n_threads_ - 1;
  ++generation_;
  if (sleepers_ > 0) {
    std::lock_guard<std::mutex> lock(mu_);
    cv_start_.notify_all();
  }
  fn(0, n_threads_);
  auto done = [&] { return pending_ == 0; };
  if (!spin_until(done)) {
    std::unique_lock<std::mutex> lock(mu_);
    caller_asleep_ = true;
    cv_done_.wait(lock, done);
    caller_asleep_ = false;
  }
  job_ = nullptr;
}

void ThreadPool::parallel_for(int64_t n, int64_t grain, const std::function<void(int, int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  if (grain < 1) grain = 1;
  int64_t n_grains = (n + grain - 1) / grain;
  int use = static_cast<int>(std::min<int64_t>(n_threads_, n_grains));
  if (use <= 1) {
    fn(0, 0, n);
    return;
  }
  run_on_all([&](int ti, int) {
    if (ti >= use) return;
    int64_t g0 = n_grains * ti / use, g1 = n_grains * (ti + 1) / use;
    int64_t b = g0 * grain, e = std::min(n, g1 * grain);
    if (b < e) fn(ti, b, e);
  });
}

}  // namespace lro

// Float buffers handed to JS without copying are lent from here and come back when JS collects
// them, or at once when an eval recycles them (the array buffer detached first, so that JS can no
// longer reach the memory); the next result of about the same size reuses one. Fresh memory costs a page fault per 4 KB page, ~11 us
// each on this project's VMs (measured: 1.45 ms for a 0.5 MB buffer, malloc + memset), so a decode
// loop that got new logits every token spent 5-20% of a small model's token faulting them in; and
// JS frees its garbage only when it collects, so the C allocator alone does not reuse them in time.
#pragma once
#include <cstddef>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

namespace lro_napi {

class FloatBufferPool {
 public:
  // One pool for the process, shared by every Node environment (worker threads too) and thread.
  static FloatBufferPool& shared() {
    static FloatBufferPool* pool = new FloatBufferPool();  // never destroyed: finalizers may run at exit
    return *pool;
  }

  // An empty vector with capacity for at least n floats: a pooled one with at most twice that, or new.
  std::vector<float> take(size_t n) {
    if (n * sizeof(float) >= kMinBytes) {
      std::lock_guard<std::mutex> lock(mu_);
      size_t best = free_.size();
      for (size_t i = 0; i < free_.size(); ++i) {
        const size_t c = free_[i].capacity();
        if (c >= n && c <= 2 * n && (best == free_.size() || c < free_[best].capacity())) best = i;
      }
      if (best < free_.size()) {
        std::vector<float> v = std::move(free_[best]);
        free_[best] = std::move(free_.back());
        free_.pop_back();
        held_bytes_ -= v.capacity() * sizeof(float);
        v.clear();
        return v;
      }
    }
    std::vector<float> v;
    v.reserve(n);
    return v;
  }

  // JS holds an array over *v's storage (freed by `returned`); `reclaim` may take it back before.
  void lend(std::vector<float>* v) {
    std::lock_guard<std::mutex> lock(mu_);
    lent_[v->data()] = v;
  }
  // The finalizer of a lent array: its storage, unless reclaimed, goes back to the pool.
  void returned(std::vector<float>* v) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = lent_.find(v->data());
      if (it != lent_.end() && it->second == v) lent_.erase(it);
      keep(std::move(*v));
    }
    delete v;
  }
  bool is_lent(const void* data, size_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = lent_.find(data);
    return it != lent_.end() && it->second->size() * sizeof(float) == bytes;
  }
  // Takes back the storage at `data` (bytes long) once JS can no longer reach it (its array buffer
  // detached); false if it is not a lent buffer of that size.
  bool reclaim(const void* data, size_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = lent_.find(data);
    if (it == lent_.end() || it->second->size() * sizeof(float) != bytes) return false;
    keep(std::move(*it->second));  // leaves the vector empty for its finalizer
    it->second->clear();
    it->second->shrink_to_fit();
    lent_.erase(it);
    return true;
  }

 private:
  FloatBufferPool() = default;
  // Keeps v's storage for a later take() while the pool holds under kMaxBytes; frees it otherwise.
  // With mu_ held.
  void keep(std::vector<float>&& v) {
    const size_t bytes = v.capacity() * sizeof(float);
    if (bytes < kMinBytes || held_bytes_ + bytes > kMaxBytes) return;
    held_bytes_ += bytes;
    free_.push_back(std::move(v));
  }
  // Smaller buffers stay in the C allocator's own free lists; the cap bounds what idle memory is kept
  // (a 1B model's 128k-vocabulary logits: 128 tokens' worth, about what JS frees per collection).
  static constexpr size_t kMinBytes = 64 * 1024;
  static constexpr size_t kMaxBytes = size_t(64) << 20;
  std::mutex mu_;
  std::vector<std::vector<float>> free_;
  std::unordered_map<const void*, std::vector<float>*> lent_;  // by data pointer
  size_t held_bytes_ = 0;
};

}  // namespace lro_napi

// UvHandle<T>: owns one libuv handle (uv_poll_t, uv_timer_t, uv_tcp_t, ...). Lives in the
// lowest layer that uses libuv so links, the node and the apps share it. Loop thread only.
//
// libuv frees nothing itself and requires a handle's memory to stay valid until its close
// callback has run, which is after the owner may be gone. So the handle lives on the heap,
// and the destructor (or close()) calls uv_close with a callback that deletes it. The
// handle's `data` is cleared first: a callback that still fires sees nullptr and returns.
#pragma once

#include <uv.h>

#include <utility>

namespace roam {

template <typename T>
class UvHandle {
 public:
  UvHandle() : handle_(new T{}) {}
  ~UvHandle() { close(); }
  UvHandle(const UvHandle&) = delete;
  UvHandle& operator=(const UvHandle&) = delete;
  UvHandle(UvHandle&& other) noexcept
      : handle_(std::exchange(other.handle_, nullptr)), initialized_(other.initialized_) {}
  UvHandle& operator=(UvHandle&& other) noexcept {
    if (this != &other) {
      close();
      handle_ = std::exchange(other.handle_, nullptr);
      initialized_ = other.initialized_;
    }
    return *this;
  }

  T* get() const { return handle_; }
  uv_handle_t* base() const { return reinterpret_cast<uv_handle_t*>(handle_); }
  uv_stream_t* stream() const { return reinterpret_cast<uv_stream_t*>(handle_); }
  // Call after a successful uv_<thing>_init: from then on the handle must be uv_close'd.
  void mark_initialized() { initialized_ = true; }
  bool valid() const { return handle_ != nullptr && initialized_; }

  // Closes the handle; `on_closed` (optional) runs from libuv's close callback, after
  // every pending request of the handle has been cancelled and called back.
  void close(uv_close_cb on_closed = nullptr, void* closed_arg = nullptr) {
    if (handle_ == nullptr) return;
    T* h = std::exchange(handle_, nullptr);
    if (!initialized_) {
      delete h;
      return;
    }
    auto* base_handle = reinterpret_cast<uv_handle_t*>(h);
    base_handle->data = on_closed ? new Closer{on_closed, closed_arg} : nullptr;
    uv_close(base_handle, &UvHandle::on_close);
  }

 private:
  struct Closer {
    uv_close_cb cb;
    void* arg;
  };
  static void on_close(uv_handle_t* h) noexcept {
    auto* closer = static_cast<Closer*>(h->data);
    if (closer != nullptr) {
      h->data = closer->arg;
      closer->cb(h);
      delete closer;
    }
    delete reinterpret_cast<T*>(h);
  }

  T* handle_;
  bool initialized_ = false;
};

// Initialises `timer` on `loop` and starts it calling (owner->*Method)() every
// `interval_ms`. A housekeeping timer should not keep the loop alive on its own
// (`keeps_loop_alive` false). Returns false when libuv refused (the timer stays unused).
template <auto Method, typename Owner>
bool start_repeating_timer(UvHandle<uv_timer_t>& timer, uv_loop_t* loop, Owner* owner, uint64_t interval_ms,
                           bool keeps_loop_alive) {
  if (uv_timer_init(loop, timer.get()) != 0) return false;
  timer.mark_initialized();
  timer.get()->data = owner;
  uv_timer_start(
      timer.get(),
      [](uv_timer_t* t) {
        if (auto* self = static_cast<Owner*>(t->data)) (self->*Method)();
      },
      interval_ms, interval_ms);
  if (!keeps_loop_alive) uv_unref(timer.base());
  return true;
}

}  // namespace roam

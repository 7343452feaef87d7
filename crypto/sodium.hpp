// libsodium set-up and the secret-memory type every key lives in. Any thread once
// ensure_sodium() returned (call it before any other crypto/ function; it is idempotent).
//
// Secrets live in sodium_malloc'd memory (guard pages, never swapped where mlock works,
// wiped on free) and are never logged or printed except where the user asked for them
// (`roamctl genkey`).
#pragma once

#include <sodium.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <new>
#include <span>
#include <stdexcept>

namespace roam::crypto {

// Initialises libsodium once; throws std::runtime_error when it cannot (no entropy).
inline void ensure_sodium() {
  if (sodium_init() < 0) throw std::runtime_error("libsodium could not be initialised");
}

// N secret bytes in sodium_malloc'd memory, wiped when destroyed. Movable, not copyable.
template <size_t N>
class SecretBytes {
 public:
  // sodium_malloc needs an initialised libsodium (its page size): ensure it first.
  SecretBytes() : bytes_((ensure_sodium(), static_cast<uint8_t*>(sodium_malloc(N)))) {
    if (bytes_ == nullptr) throw std::bad_alloc();
    sodium_memzero(bytes_, N);
  }
  ~SecretBytes() {
    if (bytes_ != nullptr) sodium_free(bytes_);  // sodium_free wipes before freeing
  }
  SecretBytes(const SecretBytes&) = delete;
  SecretBytes& operator=(const SecretBytes&) = delete;
  SecretBytes(SecretBytes&& other) noexcept : bytes_(other.bytes_) { other.bytes_ = nullptr; }
  SecretBytes& operator=(SecretBytes&& other) noexcept {
    if (this != &other) {
      if (bytes_ != nullptr) sodium_free(bytes_);
      bytes_ = other.bytes_;
      other.bytes_ = nullptr;
    }
    return *this;
  }

  uint8_t* data() { return bytes_; }
  const uint8_t* data() const { return bytes_; }
  static constexpr size_t size() { return N; }
  std::span<const uint8_t, N> span() const { return std::span<const uint8_t, N>(bytes_, N); }

 private:
  uint8_t* bytes_;
};

// N secret bytes on the stack, wiped when they go out of scope: for intermediate values
// (HMAC pads, HKDF outputs, DH results) that live for one function call. sodium_malloc
// costs an mmap, two mprotects and a munmap each time, which made a handshake take
// milliseconds; these never leave the stack frame and are scrubbed as they leave it.
template <size_t N>
class ScratchSecret {
 public:
  ScratchSecret() { sodium_memzero(bytes_.data(), N); }
  ~ScratchSecret() { sodium_memzero(bytes_.data(), N); }
  ScratchSecret(const ScratchSecret&) = delete;
  ScratchSecret& operator=(const ScratchSecret&) = delete;

  uint8_t* data() { return bytes_.data(); }
  const uint8_t* data() const { return bytes_.data(); }
  static constexpr size_t size() { return N; }
  std::span<const uint8_t, N> span() const { return std::span<const uint8_t, N>(bytes_.data(), N); }

 private:
  std::array<uint8_t, N> bytes_;
};

}  // namespace roam::crypto

#include "crypto/identity_key.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace roam::crypto {

namespace {

constexpr size_t base64_key_chars = 44;  // 32 bytes -> 44 characters with padding
constexpr size_t max_key_file_bytes = 256;

std::string_view trim(std::string_view text) {
  const char* space = " \t\r\n";
  size_t begin = text.find_first_not_of(space);
  if (begin == std::string_view::npos) return {};
  size_t end = text.find_last_not_of(space);
  return text.substr(begin, end - begin + 1);
}

// Decodes exactly 32 bytes into `out` (which may be secret memory).
bool decode_key(std::string_view text, uint8_t* out) {
  text = trim(text);
  if (text.size() != base64_key_chars) return false;
  size_t decoded = 0;
  const char* end = nullptr;
  if (sodium_base642bin(out, key_bytes, text.data(), text.size(), nullptr, &decoded, &end,
                        sodium_base64_VARIANT_ORIGINAL) != 0)
    return false;
  return decoded == key_bytes && end == text.data() + text.size();
}

}  // namespace

const char* key_error_name(KeyError error) {
  switch (error) {
    case KeyError::bad_base64:
      return "not a base64 X25519 key (32 bytes)";
    case KeyError::file_unreadable:
      return "cannot read the key file";
    case KeyError::file_too_open:
      return "key file is accessible by group or others (chmod 600)";
    case KeyError::file_exists:
      return "key file already exists (not overwritten)";
    case KeyError::file_unwritable:
      return "cannot write the key file";
  }
  return "unknown key error";
}

std::string to_base64(std::span<const uint8_t> bytes) {
  std::string out(sodium_base64_encoded_len(bytes.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(out.data(), out.size(), bytes.data(), bytes.size(), sodium_base64_VARIANT_ORIGINAL);
  out.resize(std::strlen(out.c_str()));
  return out;
}

std::optional<PublicKey> public_key_from_base64(std::string_view text) {
  PublicKey key{};
  if (!decode_key(text, key.data())) return std::nullopt;
  return key;
}

void IdentityKey::derive_public() {
  crypto_scalarmult_base(public_.data(), secret_.data());
}

IdentityKey IdentityKey::generate() {
  ensure_sodium();
  IdentityKey key;
  randombytes_buf(key.secret_.data(), key_bytes);
  // Clamping as RFC 7748 section 5 describes (X25519 clamps again internally; storing the
  // clamped form matches what `wg genkey` prints).
  key.secret_.data()[0] &= 248;
  key.secret_.data()[31] &= 127;
  key.secret_.data()[31] |= 64;
  key.derive_public();
  return key;
}

Result<IdentityKey, KeyError> IdentityKey::from_base64(std::string_view text) {
  ensure_sodium();
  IdentityKey key;
  if (!decode_key(text, key.secret_.data())) return unexpected(KeyError::bad_base64);
  key.derive_public();
  return key;
}

std::string IdentityKey::secret_base64() const {
  return to_base64(secret_.span());
}

Result<SecretBytes<key_bytes>, KeyError> load_secret_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return unexpected(KeyError::file_unreadable);
  struct stat info {};
  if (fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
    ::close(fd);
    return unexpected(KeyError::file_unreadable);
  }
  if ((info.st_mode & 077) != 0) {
    ::close(fd);
    return unexpected(KeyError::file_too_open);
  }
  // Read into secret memory: the file holds a private key.
  SecretBytes<max_key_file_bytes> text;
  ssize_t n;
  do {
    n = ::read(fd, text.data(), max_key_file_bytes);
  } while (n < 0 && errno == EINTR);
  ::close(fd);
  if (n <= 0 || static_cast<size_t>(n) == max_key_file_bytes) return unexpected(KeyError::bad_base64);
  SecretBytes<key_bytes> secret;
  if (!decode_key(std::string_view(reinterpret_cast<const char*>(text.data()), static_cast<size_t>(n)), secret.data()))
    return unexpected(KeyError::bad_base64);
  return secret;
}

Result<IdentityKey, KeyError> IdentityKey::load(const std::string& path) {
  auto secret = load_secret_file(path);
  if (!secret) return unexpected(secret.error());
  IdentityKey key;
  key.secret_ = std::move(*secret);
  key.derive_public();
  return key;
}

Result<Ok, KeyError> save_secret_file(const std::string& path, std::span<const uint8_t, key_bytes> secret) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return unexpected(errno == EEXIST ? KeyError::file_exists : KeyError::file_unwritable);
  fchmod(fd, 0600);  // whatever the umask made of it
  std::string line = to_base64(secret) + "\n";
  bool ok = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
  sodium_memzero(line.data(), line.size());
  ok = ::close(fd) == 0 && ok;
  if (!ok) {
    ::unlink(path.c_str());
    return unexpected(KeyError::file_unwritable);
  }
  return Ok{};
}

Result<Ok, KeyError> IdentityKey::save(const std::string& path) const {
  return save_secret_file(path, secret_.span());
}

}  // namespace roam::crypto

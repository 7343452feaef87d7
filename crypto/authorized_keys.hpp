// AuthorizedKeys: the operator keys a server obeys on its control port (`--operators
// FILE`, like ssh's authorized_keys or a WireGuard peer list): the X25519 public keys of
// the roamctl identities allowed to start moves and read status. Pure parsing plus a file
// loader; any thread.
//
// File format, one key per line, '#' comments and blank lines ignored:
//   BASE64_PUBLIC_KEY [COMMENT...]       (`roamctl genkey --out op.key` prints it)
#pragma once

#include <cstddef>
#include <map>
#include <string>
#include <string_view>

#include "base/result.hpp"
#include "crypto/identity_key.hpp"

namespace roam::crypto {

struct AuthorizedKeysError {
  size_t line = 0;  // 1-based; 0: the file itself
  std::string reason;
};

class AuthorizedKeys {
 public:
  static Result<AuthorizedKeys, AuthorizedKeysError> parse(std::string_view text);
  static Result<AuthorizedKeys, AuthorizedKeysError> load(const std::string& path);

  bool contains(const PublicKey& key) const { return keys_.count(key) != 0; }
  // The comment the key was listed with ("" when none): names the operator in logs.
  std::string comment(const PublicKey& key) const;
  size_t size() const { return keys_.size(); }

 private:
  std::map<PublicKey, std::string> keys_;
};

}  // namespace roam::crypto

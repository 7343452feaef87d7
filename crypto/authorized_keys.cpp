#include "crypto/authorized_keys.hpp"

#include <fstream>
#include <sstream>

namespace roam::crypto {

Result<AuthorizedKeys, AuthorizedKeysError> AuthorizedKeys::parse(std::string_view text) {
  AuthorizedKeys keys;
  size_t line_number = 0;
  while (!text.empty()) {
    size_t end = text.find('\n');
    std::string_view line = text.substr(0, end);
    text = end == std::string_view::npos ? std::string_view{} : text.substr(end + 1);
    ++line_number;
    size_t begin = line.find_first_not_of(" \t\r");
    if (begin == std::string_view::npos || line[begin] == '#') continue;
    line = line.substr(begin);
    size_t key_end = line.find_first_of(" \t\r");
    auto key = public_key_from_base64(line.substr(0, key_end));
    if (!key) return unexpected(AuthorizedKeysError{line_number, "not a base64 X25519 public key"});
    std::string comment;
    if (key_end != std::string_view::npos) {
      std::string_view rest = line.substr(key_end);
      size_t from = rest.find_first_not_of(" \t\r");
      size_t to = rest.find_last_not_of(" \t\r");
      if (from != std::string_view::npos) comment = std::string(rest.substr(from, to - from + 1));
    }
    keys.keys_[*key] = std::move(comment);
  }
  return keys;
}

Result<AuthorizedKeys, AuthorizedKeysError> AuthorizedKeys::load(const std::string& path) {
  std::ifstream file(path);
  if (!file) return unexpected(AuthorizedKeysError{0, "cannot read " + path});
  std::stringstream text;
  text << file.rdbuf();
  return parse(text.str());
}

std::string AuthorizedKeys::comment(const PublicKey& key) const {
  auto found = keys_.find(key);
  return found == keys_.end() ? std::string() : found->second;
}

}  // namespace roam::crypto

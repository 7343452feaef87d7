#include "crypto/known_hosts.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

namespace roam::crypto {

namespace {

constexpr size_t max_peer_id = 64;
constexpr size_t max_file_bytes = 16u << 20;

bool parse_u64(std::string_view text, uint64_t& out) {
  if (text.empty()) return false;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && end == text.data() + text.size();
}

std::vector<std::string_view> split_fields(std::string_view line) {
  std::vector<std::string_view> fields;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    size_t start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t') ++i;
    if (i > start) fields.push_back(line.substr(start, i - start));
  }
  return fields;
}

}  // namespace

const char* trust_verdict_name(TrustVerdict verdict) {
  switch (verdict) {
    case TrustVerdict::known:
      return "known";
    case TrustVerdict::learned:
      return "learned on first use";
    case TrustVerdict::key_mismatch:
      return "KEY MISMATCH: the peer presents another key than the one on file";
    case TrustVerdict::unknown:
      return "unknown peer (keys are pinned)";
    case TrustVerdict::bad_peer_id:
      return "invalid peer id";
  }
  return "unknown verdict";
}

bool valid_peer_id(std::string_view id) {
  if (id.empty() || id.size() > max_peer_id) return false;
  for (char c : id) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == ':' || c == '-';
    if (!ok) return false;
  }
  return true;
}

TrustVerdict KnownHosts::check(std::string_view peer_id, const PublicKey& key, uint64_t now, TrustPolicy policy) {
  if (!valid_peer_id(peer_id)) return TrustVerdict::bad_peer_id;
  auto it = hosts_.find(peer_id);
  if (it != hosts_.end()) {
    // Constant time: the comparison must not tell an attacker how much of a key matched.
    if (sodium_memcmp(it->second.key.data(), key.data(), key_bytes) != 0) return TrustVerdict::key_mismatch;
    if (now > it->second.last_seen) it->second.last_seen = now;
    return TrustVerdict::known;
  }
  if (policy == TrustPolicy::pinned) return TrustVerdict::unknown;
  hosts_.emplace(std::string(peer_id), KnownHost{key, now, now});
  return TrustVerdict::learned;
}

bool KnownHosts::pin(std::string_view peer_id, const PublicKey& key, uint64_t now) {
  if (!valid_peer_id(peer_id)) return false;
  hosts_[std::string(peer_id)] = KnownHost{key, now, now};
  return true;
}

size_t KnownHosts::prune(uint64_t now, uint64_t max_idle) {
  return std::erase_if(hosts_, [&](const auto& entry) {
    return now > entry.second.last_seen && now - entry.second.last_seen > max_idle;
  });
}

Result<KnownHosts, KnownHostsParseError> KnownHosts::parse(std::string_view text) {
  KnownHosts store;
  size_t line_number = 0;
  while (!text.empty()) {
    ++line_number;
    size_t newline = text.find('\n');
    std::string_view line = text.substr(0, newline);
    text = newline == std::string_view::npos ? std::string_view() : text.substr(newline + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    auto fields = split_fields(line);
    if (fields.empty() || fields[0].front() == '#') continue;
    auto fail = [line_number](std::string reason) {
      return unexpected(KnownHostsParseError{line_number, std::move(reason)});
    };
    if (fields.size() != 4) return fail("expected PEER_ID KEY FIRST_SEEN LAST_SEEN");
    if (!valid_peer_id(fields[0])) return fail("invalid peer id '" + std::string(fields[0].substr(0, 80)) + "'");
    auto key = public_key_from_base64(fields[1]);
    if (!key) return fail("not a base64 X25519 public key");
    KnownHost host;
    host.key = *key;
    if (!parse_u64(fields[2], host.first_seen) || !parse_u64(fields[3], host.last_seen))
      return fail("times must be Unix seconds");
    if (host.last_seen < host.first_seen) return fail("last seen before first seen");
    if (!store.hosts_.emplace(std::string(fields[0]), host).second)
      return fail("peer '" + std::string(fields[0]) + "' listed twice");
  }
  return store;
}

std::string KnownHosts::format() const {
  std::ostringstream out;
  out << "# roamstack known hosts: PEER_ID PUBLIC_KEY FIRST_SEEN LAST_SEEN (Unix seconds)\n";
  for (const auto& [id, host] : hosts_)
    out << id << ' ' << to_base64(host.key) << ' ' << host.first_seen << ' ' << host.last_seen << '\n';
  return out.str();
}

Result<KnownHosts, KnownHostsParseError> KnownHosts::load(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    if (errno == ENOENT) return KnownHosts{};
    return unexpected(KnownHostsParseError{0, std::string("cannot read: ") + std::strerror(errno)});
  }
  std::string text;
  text.resize(max_file_bytes + 1);
  file.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(file.gcount()));
  if (text.size() > max_file_bytes) return unexpected(KnownHostsParseError{0, "file larger than 16 MiB"});
  return parse(text);
}

Result<Ok, std::string> KnownHosts::save(const std::string& path) const {
  std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return unexpected(std::string("cannot write ") + tmp + ": " + std::strerror(errno));
  std::string text = format();
  bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && ::fsync(fd) == 0;
  ok = ::close(fd) == 0 && ok;
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
    std::string error = std::string("cannot write ") + path + ": " + std::strerror(errno);
    ::unlink(tmp.c_str());
    return unexpected(error);
  }
  return Ok{};
}

}  // namespace roam::crypto

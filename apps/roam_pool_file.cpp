#include "apps/roam_pool_file.hpp"

#include <charconv>
#include <sstream>

#include "crypto/roam_keys.hpp"

namespace roam {

namespace {

std::optional<uint64_t> number(const std::string& text, uint64_t max) {
  uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value > max) return std::nullopt;
  return value;
}

std::optional<control::RoamServer> member(const std::string& text) {
  size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0) return std::nullopt;
  std::string host = text.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  } else if (host.find(':') != std::string::npos) {
    return std::nullopt;  // IPv6 without brackets
  }
  auto address = IpAddress::parse(host);
  auto port = number(text.substr(colon + 1), 65535);
  if (!address || !port || *port == 0) return std::nullopt;
  return control::RoamServer{*address, static_cast<uint16_t>(*port)};
}

}  // namespace

Result<RoamPoolFile, std::string> parse_roam_pool_file(std::string_view text) {
  RoamPoolFile pool;
  std::istringstream in{std::string(text)};
  std::string line;
  for (int number_of_line = 1; std::getline(in, line); ++number_of_line) {
    if (auto hash = line.find('#'); hash != std::string::npos) line.resize(hash);
    std::istringstream words(line);
    std::string key, value, extra;
    if (!(words >> key)) continue;
    auto fail = [&](const std::string& why) {
      return unexpected("line " + std::to_string(number_of_line) + ": " + why);
    };
    if (!(words >> value)) return fail("expected '" + key + " VALUE'");
    std::string control;
    if (key == "member" && (words >> extra)) {
      if (extra != "control" || !(words >> control))
        return fail("expected 'member IP:PORT [control IP:PORT]'");
      extra.clear();
    }
    if (words >> extra) return fail("expected '" + key + " VALUE'");
    if (key == "seed") {
      pool.seed_file = value;
    } else if (key == "length") {
      auto n = number(value, uint64_t{1} << 32);
      if (!n || *n == 0) return fail("length must be 1..4294967296");
      pool.length = *n;
    } else if (key == "start") {
      auto s = number(value, uint64_t{1} << 40);
      if (!s) return fail("start must be Unix seconds");
      pool.start_ms = static_cast<int64_t>(*s * 1000);
    } else if (key == "epoch") {
      auto s = number(value, 86400);
      if (!s || *s == 0) return fail("epoch must be 1..86400 seconds");
      pool.unit_ms = static_cast<uint32_t>(*s * 1000);
    } else if (key == "m") {
      auto m = number(value, crypto::max_epoch_bits);
      if (!m) return fail("m must be 0..24");
      pool.m = static_cast<uint8_t>(*m);
    } else if (key == "delta-ms" || key == "gamma-ms") {
      auto ms = number(value, 3'600'000);
      if (!ms) return fail(key + " must be 0..3600000");
      (key == "delta-ms" ? pool.delta_ms : pool.gamma_ms) = static_cast<int64_t>(*ms);
    } else if (key == "grant-epochs") {
      auto n = number(value, uint64_t{1} << 32);
      if (!n || *n == 0) return fail("grant-epochs must be 1..4294967295");
      pool.grant_epochs = static_cast<uint32_t>(std::min<uint64_t>(*n, UINT32_MAX));
    } else if (key == "update-seconds") {
      auto n = number(value, 86400);
      if (!n || *n == 0) return fail("update-seconds must be 1..86400");
      pool.update_seconds = static_cast<uint32_t>(*n);
    } else if (key == "member") {
      auto m = member(value);
      if (!m) return fail("bad member '" + value + "': expected IP:PORT ([IPv6]:PORT)");
      if (pool.members.size() == crypto::max_roam_servers) return fail("more than 64 members");
      if (!control.empty()) {
        auto c = member(control);  // the same IP:PORT form ([IPv6]:PORT)
        if (!c) return fail("bad control '" + control + "': expected IP:PORT ([IPv6]:PORT)");
      }
      pool.members.push_back(*m);
      pool.member_controls.push_back(control);
    } else {
      return fail("unknown setting '" + key + "'");
    }
  }
  if (pool.seed_file.empty()) return unexpected(std::string("no 'seed FILE'"));
  if (!pool.start_ms) return unexpected(std::string("no 'start UNIX_SECONDS'"));
  if (pool.members.empty()) return unexpected(std::string("no 'member IP:PORT'"));
  return pool;
}

}  // namespace roam

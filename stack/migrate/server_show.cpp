#include "stack/migrate/server_show.hpp"

#include <fmt/format.h>

namespace roam::migrate {

namespace {

std::string endpoint(const IpAddress& address, uint16_t port) {
  return address.version == 6 ? fmt::format("[{}]:{}", address.to_string(), port)
                              : fmt::format("{}:{}", address.to_string(), port);
}

// "3.2 s", "4 min 10 s", "2 h 5 min"
std::string ago(uint64_t ms) {
  uint64_t s = ms / 1000;
  if (s < 60) return fmt::format("{:.1f} s", static_cast<double>(ms) / 1000.0);
  if (s < 3600) return fmt::format("{} min {} s", s / 60, s % 60);
  if (s < 86400) return fmt::format("{} h {} min", s / 3600, (s % 3600) / 60);
  return fmt::format("{} d {} h", s / 86400, (s % 86400) / 3600);
}

std::string bytes(uint64_t n) {
  if (n < 1024) return fmt::format("{} B", n);
  if (n < 1024 * 1024) return fmt::format("{:.1f} KiB", static_cast<double>(n) / 1024.0);
  if (n < 1024ULL * 1024 * 1024) return fmt::format("{:.1f} MiB", static_cast<double>(n) / 1048576.0);
  return fmt::format("{:.2f} GiB", static_cast<double>(n) / 1073741824.0);
}

std::string optional_number(const std::optional<uint64_t>& value) {
  return value ? std::to_string(*value) : "null";
}

}  // namespace

std::string json_string(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += fmt::format("\\u{:04x}", static_cast<unsigned>(c));
    } else {
      out += c;
    }
  }
  return out + '"';
}

std::string render_show_json(const ServerShow& show) {
  std::string out = fmt::format("{{\"server\":{{\"key\":{},\"pool\":{},\"address\":{},\"address6\":{}}}",
                                json_string(show.key), show.pool.empty() ? "null" : json_string(show.pool),
                                json_string(show.address), show.address6.empty() ? "null" : json_string(show.address6));
  out += ",\"channels\":[";
  for (size_t i = 0; i < show.channels.size(); ++i) {
    const auto& c = show.channels[i];
    out += fmt::format(
        "{}{{\"key\":{},\"address\":{},\"port\":{},\"age_ms\":{},\"connections\":{}}}", i == 0 ? "" : ",",
        c.key.empty() ? "null" : json_string(c.key), json_string(c.flow.remote.to_string()), c.flow.remote_port,
        c.age_ms, c.connections);
  }
  out += "],\"sessions\":[";
  for (size_t i = 0; i < show.sessions.size(); ++i) {
    const auto& s = show.sessions[i];
    out += fmt::format("{}{{\"id\":\"{:016x}\",\"kind\":{},\"age_ms\":{},\"movable\":{},\"stays\":{},\"legs\":[",
                       i == 0 ? "" : ",", s.id, json_string(s.kind), optional_number(s.age_ms),
                       s.movable ? "true" : "false", s.movable ? "null" : json_string(s.stays));
    for (size_t j = 0; j < s.legs.size(); ++j) {
      const auto& l = s.legs[j];
      out += fmt::format(
          "{}{{\"role\":{},\"local_address\":{},\"local_port\":{},\"remote_address\":{},\"remote_port\":{},"
          "\"bytes_in\":{},\"bytes_out\":{}}}",
          j == 0 ? "" : ",", json_string(l.role), json_string(l.flow.local.to_string()), l.flow.local_port,
          json_string(l.flow.remote.to_string()), l.flow.remote_port, l.bytes_in, l.bytes_out);
    }
    out += "],\"last_move\":";
    out += s.moved_in_ago_ms ? fmt::format("{{\"ago_ms\":{},\"changeover_ms\":{}}}", *s.moved_in_ago_ms,
                                           optional_number(s.changeover_ms))
                             : "null";
    out += "}";
  }
  out += fmt::format("],\"sessions_total\":{},\"counters\":{{", show.sessions_total);
  for (size_t i = 0; i < show.counters.size(); ++i)
    out += fmt::format("{}{}:{}", i == 0 ? "" : ",", json_string(show.counters[i].first), show.counters[i].second);
  return out + "}}";
}

std::string render_show_text(const ServerShow& show) {
  std::string out = fmt::format("server: {}\n  address: {}{}\n  pool: {}\n", show.key, show.address,
                                show.address6.empty() ? "" : ", " + show.address6,
                                show.pool.empty() ? "(none)" : show.pool);
  for (const auto& c : show.channels) {
    out += fmt::format("\nchannel: {}\n  endpoint: {}\n  age: {}\n  connections: {}\n",
                       c.key.empty() ? "(handshake running)" : c.key, endpoint(c.flow.remote, c.flow.remote_port),
                       ago(c.age_ms), c.connections);
  }
  for (const auto& s : show.sessions) {
    out += fmt::format("\nsession: {:016x} ({})\n", s.id, s.kind);
    for (const auto& l : s.legs)
      out += fmt::format("  {}: {} <-> {}, {} received, {} sent\n", l.role, endpoint(l.flow.local, l.flow.local_port),
                         endpoint(l.flow.remote, l.flow.remote_port), bytes(l.bytes_in), bytes(l.bytes_out));
    out += fmt::format("  age: {}\n", s.age_ms ? ago(*s.age_ms) : "(unknown)");
    if (s.moved_in_ago_ms)
      out += fmt::format("  last move: arrived {} ago, changeover {}\n", ago(*s.moved_in_ago_ms),
                         s.changeover_ms ? fmt::format("{} ms", *s.changeover_ms) : "(client not back yet)");
    out += fmt::format("  movable: {}\n", s.movable ? "yes" : "no (" + s.stays + ")");
  }
  if (show.sessions_total > show.sessions.size())
    out += fmt::format("\n({} more sessions not listed)\n", show.sessions_total - show.sessions.size());
  std::string counters;
  for (const auto& [name, value] : show.counters)
    if (value != 0) counters += fmt::format("{}  {}: {}", counters.empty() ? "" : "\n", name, value);
  out += "\ncounters (nonzero):\n" + (counters.empty() ? std::string("  (none)") : counters) + "\n";
  return out;
}

}  // namespace roam::migrate

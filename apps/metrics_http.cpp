#include "apps/metrics_http.hpp"

#include <algorithm>

namespace roam {
namespace {

bool request_byte(char c) {
  auto u = static_cast<unsigned char>(c);
  return (u >= 0x20 && u < 0x7f) || c == '\r' || c == '\n' || c == '\t';
}

}  // namespace

HttpRequestVerdict classify_http_request(std::string_view received, size_t cap) {
  // Binary garbage is refused at once rather than after the cap or the idle timeout.
  for (char c : received)
    if (!request_byte(c)) return HttpRequestVerdict::bad_request;
  size_t end = received.find("\r\n\r\n");
  size_t end_lf = received.find("\n\n");
  if (end == std::string_view::npos && end_lf == std::string_view::npos)
    return received.size() > cap ? HttpRequestVerdict::bad_request : HttpRequestVerdict::incomplete;
  if (std::min(end, end_lf) > cap) return HttpRequestVerdict::bad_request;
  std::string_view line = received.substr(0, received.find('\n'));
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  size_t first = line.find(' ');
  size_t last = line.rfind(' ');
  if (first == std::string_view::npos || first == last) return HttpRequestVerdict::bad_request;
  std::string_view method = line.substr(0, first);
  std::string_view target = line.substr(first + 1, last - first - 1);
  std::string_view version = line.substr(last + 1);
  if (method != "GET" || (version != "HTTP/1.0" && version != "HTTP/1.1")) return HttpRequestVerdict::bad_request;
  if (target.empty() || target.front() != '/' || target.find(' ') != std::string_view::npos)
    return HttpRequestVerdict::bad_request;
  std::string_view path = target.substr(0, target.find('?'));
  return path == "/metrics" ? HttpRequestVerdict::metrics : HttpRequestVerdict::not_found;
}

std::string http_response(int status, std::string_view body) {
  std::string reason = status == 200 ? "OK" : status == 404 ? "Not Found" : "Bad Request";
  std::string type = status == 200 ? "text/plain; version=0.0.4; charset=utf-8" : "text/plain; charset=utf-8";
  std::string out = "HTTP/1.0 " + std::to_string(status) + " " + reason + "\r\nContent-Type: " + type +
                    "\r\nContent-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n";
  out += body;
  return out;
}

}  // namespace roam

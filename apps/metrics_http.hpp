// The little HTTP/1.0 the metrics endpoint speaks, as pure functions: what a buffered
// request is (complete or not, GET /metrics, another path, or bad), and the response.
// Anything but `GET /metrics[?...] HTTP/1.x` followed by header lines and an empty line
// is a bad request; a request longer than the cap without its end is one too.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace roam {

enum class HttpRequestVerdict {
  incomplete,   // no empty line yet, within the cap: read more
  metrics,      // GET /metrics
  not_found,    // a well-formed GET of another path
  bad_request,  // malformed, not GET, not HTTP/1.x, bytes no request has, or over the cap
};

HttpRequestVerdict classify_http_request(std::string_view received, size_t cap);

// A complete HTTP/1.0 response that closes the connection: 200 (metrics text), 400, 404.
std::string http_response(int status, std::string_view body);

}  // namespace roam

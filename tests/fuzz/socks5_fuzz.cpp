// libFuzzer target for the SOCKS5 parsers of roam-client's -D port (stack/wire/socks5):
// never reads out of range, an ok message never claims more bytes than it was given, a
// message that is ok stays ok with the same length when more bytes follow it, and a
// parsed request re-encodes (as far as its address goes) to a request that parses the same.
// Run: fuzz_socks5 -max_len=600 <scratch-dir> (built with Clang only).
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "stack/wire/socks5.hpp"

using namespace roam::wire::socks5;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> input(data, size);
  std::vector<uint8_t> longer(input.begin(), input.end());
  longer.push_back(0x5A);

  auto greeting = parse_greeting(input);
  if (greeting.status == Status::ok) {
    if (greeting.consumed > size || greeting.consumed > max_greeting) __builtin_trap();
    auto again = parse_greeting(longer);
    if (again.status != Status::ok || again.consumed != greeting.consumed) __builtin_trap();
  }
  auto credentials = parse_credentials(input);
  if (credentials.status == Status::ok) {
    if (credentials.consumed > size || credentials.consumed > max_credentials) __builtin_trap();
    auto again = parse_credentials(longer);
    if (again.status != Status::ok || again.user != credentials.user || again.password != credentials.password)
      __builtin_trap();
  }
  auto request = parse_request(input);
  if (request.status == Status::ok) {
    if (request.consumed > size || request.consumed > max_request) __builtin_trap();
    auto again = parse_request(longer);
    if (again.status != Status::ok || again.consumed != request.consumed) __builtin_trap();
    std::vector<uint8_t> encoded{version, request.command, 0, static_cast<uint8_t>(request.address_type)};
    if (request.address_type == AddressType::domain) {
      encoded.push_back(static_cast<uint8_t>(request.name.size()));
      encoded.insert(encoded.end(), request.name.begin(), request.name.end());
    } else {
      auto address = request.address.span();
      encoded.insert(encoded.end(), address.begin(), address.end());
    }
    encoded.push_back(static_cast<uint8_t>(request.port >> 8));
    encoded.push_back(static_cast<uint8_t>(request.port & 0xFF));
    auto decoded = parse_request(encoded);
    if (decoded.status != Status::ok || decoded.port != request.port || decoded.name != request.name ||
        !(decoded.address == request.address))
      __builtin_trap();
  }
  if (request.status == Status::incomplete && size >= max_request) __builtin_trap();
  return 0;
}

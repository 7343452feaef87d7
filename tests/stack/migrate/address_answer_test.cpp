// The address answer and its transfer features (address_answer.hpp, docs/PROTOCOL.md 4.3):
// the exact texts of the examples, features only when asked, unknown features ignored,
// and every malformed answer refused.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "stack/migrate/address_answer.hpp"
#include "stack/migrate/control_frame.hpp"

namespace {

using namespace roam;
using namespace roam::migrate;

IpAddress ip(const char* text) { return *IpAddress::parse(text); }

TEST_CASE("the address request asks for pre-copy with one word, and asks nothing without it") {
  CHECK(encode_address_request(TransferFeatures{true}) == "precopy");
  CHECK(encode_address_request(TransferFeatures{}).empty());
  CHECK(decode_address_request("precopy").precopy);
  CHECK(decode_address_request("later_feature precopy").precopy);
  CHECK_FALSE(decode_address_request("").precopy);
  CHECK_FALSE(decode_address_request("precopyx").precopy);
  CHECK_FALSE(decode_address_request(std::string(300, 'a') + " precopy").precopy);  // too long: asks nothing
}

TEST_CASE("the address answer announces pre-copy after the addresses, as in PROTOCOL.md 4.3") {
  CHECK(encode_address_answer(ip("198.18.13.2"), std::nullopt, TransferFeatures{true}) == "address 198.18.13.2 precopy");
  CHECK(encode_address_answer(ip("198.18.13.2"), ip("2001:db8:13::2"), TransferFeatures{true}) ==
        "address 198.18.13.2 2001:db8:13::2 precopy");
  CHECK(encode_address_answer(ip("198.18.13.2"), ip("2001:db8:13::2"), TransferFeatures{}) ==
        "address 198.18.13.2 2001:db8:13::2");

  auto both = decode_address_answer("address 198.18.13.2 2001:db8:13::2 precopy");
  REQUIRE(both);
  REQUIRE(both->addresses.size() == 2);
  CHECK(both->addresses[1] == ip("2001:db8:13::2"));
  CHECK(both->features.precopy);
  auto old = decode_address_answer("address 198.18.13.2");  // a target that predates features
  REQUIRE(old);
  CHECK(old->addresses.size() == 1);
  CHECK_FALSE(old->features.precopy);
  auto unknown = decode_address_answer("address 198.18.13.2 later_feature");
  REQUIRE(unknown);
  CHECK_FALSE(unknown->features.precopy);
  // The addresses-only parser (the Informer's) takes the same answer.
  CHECK(parse_address_answer("address 198.18.13.2 precopy").size() == 1);
}

TEST_CASE("the example frames of PROTOCOL.md 4.3 byte for byte") {
  std::vector<uint8_t> request;
  append_frame(FrameType::address_request, encode_address_request(TransferFeatures{true}), request);
  CHECK(request == std::vector<uint8_t>{0x00, 0x00, 0x00, 0x07, 0x06, 0x70, 0x72, 0x65, 0x63, 0x6f, 0x70, 0x79});
  std::vector<uint8_t> answer;
  append_frame(FrameType::reply, encode_address_answer(ip("198.18.13.2"), std::nullopt, TransferFeatures{true}),
               answer);
  const std::vector<uint8_t> expected = {0x00, 0x00, 0x00, 0x1b, 0x04, 0x61, 0x64, 0x64, 0x72, 0x65, 0x73, 0x73,
                                         0x20, 0x31, 0x39, 0x38, 0x2e, 0x31, 0x38, 0x2e, 0x31, 0x33, 0x2e, 0x32,
                                         0x20, 0x70, 0x72, 0x65, 0x63, 0x6f, 0x70, 0x79};
  CHECK(answer == expected);
}

TEST_CASE("a malformed address answer is refused whole") {
  for (const char* text : {"", "address", "address ", "addresses 198.18.13.2", "error not a member",
                           "address precopy", "address 198.18.13.2  precopy", "address 198.18.13.2 precopy ",
                           "address 198.18.13.2 2001:db8::1 198.18.0.1", "address 198.18.13.2 precopy 198.18.0.1",
                           "address 198.18.13.2 Precopy", "address 198.18.13.2 pre-copy",
                           "address 198.18.13.2 a b c d e f g h i"}) {
    CAPTURE(std::string(text));
    CHECK_FALSE(decode_address_answer(text));
    CHECK(parse_address_answer(text).empty());
  }
  // 33 characters is one too many for a feature word.
  CHECK_FALSE(decode_address_answer("address 198.18.13.2 " + std::string(33, 'a')));
  CHECK(decode_address_answer("address 198.18.13.2 " + std::string(32, 'a')));
}

}  // namespace

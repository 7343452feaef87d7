// The owner-proof SYN option: known bytes encode and decode, it is found among other
// options, and a wrong length, a duplicate or a broken option list is malformed.
#include "stack/wire/owner_proof_option.hpp"

#include <doctest/doctest.h>

#include <vector>

namespace {

using namespace roam::wire;
using Bytes = std::vector<uint8_t>;

OwnerProofOption sample() {
  OwnerProofOption o;
  for (uint8_t i = 0; i < 8; ++i) {
    o.channel_tag[i] = static_cast<uint8_t>(0x10 + i);
    o.mac[i] = static_cast<uint8_t>(0x20 + i);
  }
  return o;
}

const Bytes known = {253, 20, 0x52, 0x4F, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15,
                     0x16, 0x17, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27};

}  // namespace

TEST_CASE("the owner-proof option encodes to known bytes and decodes back") {
  Bytes out(owner_proof_option_bytes);
  CHECK(write_owner_proof_option(sample(), out) == owner_proof_option_bytes);
  CHECK(out == known);
  OwnerProofOption decoded;
  CHECK(find_owner_proof_option(known, decoded) == MacOptionLookup::found);
  CHECK(decoded == sample());
  Bytes small(owner_proof_option_bytes - 1);
  CHECK(write_owner_proof_option(sample(), small) == 0);
}

TEST_CASE("the owner-proof option is found after lwIP's SYN options and beside the segment MAC") {
  Bytes options = {2, 4, 0x05, 0xb4, 1, 3, 3, 7};  // MSS, NOP, window scale
  options.insert(options.end(), known.begin(), known.end());
  const Bytes mac = {253, 16, 0x52, 0x53, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  options.insert(options.end(), mac.begin(), mac.end());
  OwnerProofOption decoded;
  CHECK(find_owner_proof_option(options, decoded) == MacOptionLookup::found);
  CHECK(decoded == sample());
  CHECK(find_owner_proof_option(Bytes{2, 4, 0x05, 0xb4}, decoded) == MacOptionLookup::absent);
  CHECK(find_owner_proof_option(Bytes{}, decoded) == MacOptionLookup::absent);
}

TEST_CASE("a wrong length, a duplicate or a broken option list is malformed") {
  OwnerProofOption decoded;
  Bytes shorter(known.begin(), known.end() - 1);
  shorter[1] = 19;
  CHECK(find_owner_proof_option(shorter, decoded) == MacOptionLookup::malformed);
  Bytes twice = known;
  twice.insert(twice.end(), known.begin(), known.end());
  CHECK(find_owner_proof_option(twice, decoded) == MacOptionLookup::malformed);
  for (size_t n = 1; n < known.size(); ++n) {  // every truncation: the length runs past the end
    CAPTURE(n);
    CHECK(find_owner_proof_option(Bytes(known.begin(), known.begin() + static_cast<std::ptrdiff_t>(n)), decoded) ==
          MacOptionLookup::malformed);
  }
}

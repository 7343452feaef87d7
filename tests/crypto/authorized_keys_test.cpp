// The operators file: keys with comments are listed, comments and blank lines skipped, a
// malformed line is refused with its number.
#include "crypto/authorized_keys.hpp"

#include <doctest/doctest.h>

namespace {

using namespace roam::crypto;

TEST_CASE("authorized keys: listed keys with comments, everything else refused") {
  auto alice = IdentityKey::generate();
  auto bob = IdentityKey::generate();
  auto eve = IdentityKey::generate();
  std::string text = "# operators of pool west\n\n" + to_base64(alice.public_key()) + "  alice@ops laptop \n\t" +
                     to_base64(bob.public_key()) + "\r\n";
  auto keys = AuthorizedKeys::parse(text);
  REQUIRE(keys);
  CHECK(keys->size() == 2);
  CHECK(keys->contains(alice.public_key()));
  CHECK(keys->contains(bob.public_key()));
  CHECK_FALSE(keys->contains(eve.public_key()));
  CHECK(keys->comment(alice.public_key()) == "alice@ops laptop");
  CHECK(keys->comment(bob.public_key()).empty());

  auto bad = AuthorizedKeys::parse(to_base64(alice.public_key()) + "\nAAAA not-a-key\n");
  REQUIRE_FALSE(bad);
  CHECK(bad.error().line == 2);
  CHECK_FALSE(AuthorizedKeys::load("/nonexistent/operators"));
  auto empty = AuthorizedKeys::parse("# nobody\n");
  REQUIRE(empty);
  CHECK(empty->size() == 0);
}

}  // namespace

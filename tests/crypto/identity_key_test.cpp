// Identity keys: X25519 against RFC 7748's published vectors, the base64 text form, and
// key files that refuse loose permissions and never overwrite.
#include "crypto/identity_key.hpp"

#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

namespace {

using namespace roam::crypto;

std::string hex(std::span<const uint8_t> bytes) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (uint8_t b : bytes) {
    out += digits[b >> 4];
    out += digits[b & 15];
  }
  return out;
}

std::string base64_of_hex(const std::string& text) {
  std::vector<uint8_t> bytes;
  for (size_t i = 0; i + 1 < text.size(); i += 2)
    bytes.push_back(static_cast<uint8_t>(std::stoi(text.substr(i, 2), nullptr, 16)));
  return to_base64(bytes);
}

struct TempDir {
  std::string path;
  TempDir() {
    char pattern[] = "/tmp/roam-key-test-XXXXXX";
    REQUIRE(mkdtemp(pattern) != nullptr);
    path = pattern;
  }
  ~TempDir() { std::system(("rm -rf '" + path + "'").c_str()); }
};

TEST_CASE("the public key of RFC 7748's test private keys is the published one") {
  // RFC 7748 section 6.1: Alice's and Bob's key pairs.
  auto alice =
      IdentityKey::from_base64(base64_of_hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"));
  REQUIRE(alice);
  CHECK(hex(alice->public_key()) == "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
  auto bob =
      IdentityKey::from_base64(base64_of_hex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb"));
  REQUIRE(bob);
  CHECK(hex(bob->public_key()) == "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
}

TEST_CASE("a generated key round-trips through its base64 text") {
  auto key = IdentityKey::generate();
  std::string text = key.secret_base64();
  CHECK(text.size() == 44);
  auto again = IdentityKey::from_base64("  " + text + "\n");
  REQUIRE(again);
  CHECK(again->public_key() == key.public_key());
  CHECK(public_key_from_base64(to_base64(key.public_key())) == key.public_key());
}

TEST_CASE("text that is not a 32-byte base64 key is refused") {
  CHECK_FALSE(IdentityKey::from_base64(""));
  CHECK_FALSE(IdentityKey::from_base64("not base64 at all"));
  CHECK_FALSE(IdentityKey::from_base64(base64_of_hex("00112233")));                    // too short
  CHECK_FALSE(IdentityKey::from_base64(base64_of_hex(std::string(66, 'a'))));          // 33 bytes
  CHECK_FALSE(public_key_from_base64("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"));  // 43 chars
  CHECK(IdentityKey::from_base64("abc").error() == KeyError::bad_base64);
  CHECK(std::string(key_error_name(KeyError::file_too_open)).find("chmod 600") != std::string::npos);
}

TEST_CASE("the roamctl key commands print the RFC 7748 public key and refuse loose key files") {
  const char* roamctl = std::getenv("ROAMCTL");
  if (roamctl == nullptr) return;  // run through ctest, which sets it
  TempDir dir;
  std::string alice = base64_of_hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
  std::string out = dir.path + "/out.txt";
  std::string command = "echo '" + alice + "' | " + roamctl + " pubkey > " + out;
  REQUIRE(std::system(command.c_str()) == 0);
  std::string line;
  std::getline(std::ifstream(out), line);
  CHECK(line == base64_of_hex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"));
  std::string key_file = dir.path + "/host.key";
  REQUIRE(std::system((std::string(roamctl) + " genkey --out " + key_file + " > /dev/null").c_str()) == 0);
  CHECK(std::system((std::string(roamctl) + " pubkey --key " + key_file + " > /dev/null").c_str()) == 0);
  REQUIRE(chmod(key_file.c_str(), 0644) == 0);
  CHECK(std::system((std::string(roamctl) + " pubkey --key " + key_file + " 2> /dev/null").c_str()) != 0);
}

TEST_CASE("a key file is written 0600, read back, and never overwritten") {
  TempDir dir;
  std::string path = dir.path + "/host.key";
  auto key = IdentityKey::generate();
  REQUIRE(key.save(path));
  struct stat info {};
  REQUIRE(stat(path.c_str(), &info) == 0);
  CHECK((info.st_mode & 0777) == 0600);
  auto loaded = IdentityKey::load(path);
  REQUIRE(loaded);
  CHECK(loaded->public_key() == key.public_key());
  auto again = IdentityKey::generate().save(path);
  REQUIRE_FALSE(again);
  CHECK(again.error() == KeyError::file_exists);
  CHECK(IdentityKey::load(path)->public_key() == key.public_key());
}

TEST_CASE("a key file readable by group or others is refused") {
  TempDir dir;
  std::string path = dir.path + "/loose.key";
  REQUIRE(IdentityKey::generate().save(path));
  for (mode_t mode : {0640, 0604, 0660, 0644}) {
    REQUIRE(chmod(path.c_str(), mode) == 0);
    auto loaded = IdentityKey::load(path);
    REQUIRE_FALSE(loaded);
    CHECK(loaded.error() == KeyError::file_too_open);
  }
  REQUIRE(chmod(path.c_str(), 0400) == 0);
  CHECK(IdentityKey::load(path));
}

TEST_CASE("missing, empty and malformed key files are refused with a reason") {
  TempDir dir;
  CHECK(IdentityKey::load(dir.path + "/none.key").error() == KeyError::file_unreadable);
  CHECK(IdentityKey::load(dir.path).error() == KeyError::file_unreadable);  // a directory
  std::string path = dir.path + "/bad.key";
  { std::ofstream(path) << "this is not a key\n"; }
  REQUIRE(chmod(path.c_str(), 0600) == 0);
  CHECK(IdentityKey::load(path).error() == KeyError::bad_base64);
  { std::ofstream(path, std::ios::trunc) << ""; }
  CHECK(IdentityKey::load(path).error() == KeyError::bad_base64);
}

}  // namespace

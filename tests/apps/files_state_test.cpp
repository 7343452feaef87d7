// The files app's pure parts: request line parsing and the state encoding that moves with
// a session (apps/files_state.*). Known bytes, round trips, and every way decode must refuse.
#include "apps/files_state.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

namespace {

using namespace roam;

FilesState sending_state() {
  FilesState state;
  state.phase = FilesPhase::sending;
  state.name = "big-file_1.bin";
  state.offset = 0x0102030405;
  state.size = 0x1000000000;
  return state;
}

FilesState reading_state() {
  FilesState state;
  state.phase = FilesPhase::reading_request;
  state.request_so_far = "big-fi";
  return state;
}

TEST_CASE("files state encodes to known bytes") {
  FilesState state;
  state.phase = FilesPhase::sending;
  state.name = "a.b";
  state.offset = 5;
  state.size = 0x0100;
  std::vector<uint8_t> expected = {1, 1, 3, 'a', '.', 'b', 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 1, 0};
  CHECK(encode_files_state(state) == expected);
  CHECK(encode_files_state(reading_state()) == std::vector<uint8_t>{1, 0, 0, 6, 'b', 'i', 'g', '-', 'f', 'i'});
}

TEST_CASE("files state round-trips in both phases") {
  for (const FilesState& state : {sending_state(), reading_state(), FilesState{}}) {
    auto bytes = encode_files_state(state);
    auto decoded = decode_files_state(bytes);
    REQUIRE(decoded);
    CHECK(*decoded == state);
    CHECK(encode_files_state(*decoded) == bytes);
  }
  FilesState whole = sending_state();
  whole.offset = whole.size;  // everything handed to lwIP: still valid
  CHECK(decode_files_state(encode_files_state(whole)));
}

TEST_CASE("files state decode rejects every truncation") {
  for (const FilesState& state : {sending_state(), reading_state()}) {
    auto bytes = encode_files_state(state);
    for (size_t length = 0; length < bytes.size(); ++length) {
      auto decoded = decode_files_state(std::span<const uint8_t>(bytes.data(), length));
      REQUIRE_FALSE(decoded);
      CHECK(decoded.error() == FilesStateError::truncated);
    }
  }
}

TEST_CASE("files state decode rejects a trailing byte") {
  for (const FilesState& state : {sending_state(), reading_state()}) {
    auto bytes = encode_files_state(state);
    bytes.push_back(0);
    auto decoded = decode_files_state(bytes);
    REQUIRE_FALSE(decoded);
    CHECK(decoded.error() == FilesStateError::trailing_bytes);
  }
}

TEST_CASE("files state decode rejects an unknown version or phase") {
  auto bytes = encode_files_state(sending_state());
  for (uint8_t version : {uint8_t{0}, uint8_t{2}, uint8_t{255}}) {
    bytes[0] = version;
    auto decoded = decode_files_state(bytes);
    REQUIRE_FALSE(decoded);
    CHECK(decoded.error() == FilesStateError::unknown_version);
  }
  bytes = encode_files_state(sending_state());
  bytes[1] = 2;
  auto decoded = decode_files_state(bytes);
  REQUIRE_FALSE(decoded);
  CHECK(decoded.error() == FilesStateError::bad_phase);
}

TEST_CASE("files state decode rejects names that could leave the root or are malformed") {
  for (std::string name :
       std::vector<std::string>{"../x", "a/b", "", std::string(129, 'a'), ".", "..", "a b", "a\nb", "/etc"}) {
    FilesState state = sending_state();
    state.name = name;
    auto decoded = decode_files_state(encode_files_state(state));
    INFO("name: ", name);
    REQUIRE_FALSE(decoded);
    CHECK(decoded.error() == FilesStateError::bad_name);
  }
  FilesState longest = sending_state();
  longest.name = std::string(128, 'a');
  CHECK(decode_files_state(encode_files_state(longest)));
}

TEST_CASE("files state decode rejects an offset beyond the size") {
  FilesState state = sending_state();
  state.offset = state.size + 1;
  auto decoded = decode_files_state(encode_files_state(state));
  REQUIRE_FALSE(decoded);
  CHECK(decoded.error() == FilesStateError::offset_beyond_size);
}

TEST_CASE("files state decode rejects a partial request that is complete or too long") {
  FilesState state = reading_state();
  state.request_so_far = "name\n";
  auto decoded = decode_files_state(encode_files_state(state));
  REQUIRE_FALSE(decoded);
  CHECK(decoded.error() == FilesStateError::bad_request);
  state.request_so_far = std::string(files_max_request_bytes, 'a');
  decoded = decode_files_state(encode_files_state(state));
  REQUIRE_FALSE(decoded);
  CHECK(decoded.error() == FilesStateError::bad_request);
  state.request_so_far = std::string(files_max_request_bytes - 1, 'a');
  CHECK(decode_files_state(encode_files_state(state)));
}

TEST_CASE("file names: the allowed alphabet, 1 to 128 bytes, never . or ..") {
  CHECK(is_valid_file_name("a"));
  CHECK(is_valid_file_name("A-z_0.9"));
  CHECK(is_valid_file_name("..."));
  CHECK(is_valid_file_name(".hidden"));
  CHECK(is_valid_file_name(std::string(128, 'x')));
  CHECK_FALSE(is_valid_file_name(std::string(129, 'x')));
  CHECK_FALSE(is_valid_file_name(""));
  CHECK_FALSE(is_valid_file_name("."));
  CHECK_FALSE(is_valid_file_name(".."));
  CHECK_FALSE(is_valid_file_name("a/b"));
  CHECK_FALSE(is_valid_file_name("a\\b"));
  CHECK_FALSE(is_valid_file_name(std::string("a\0b", 3)));
  CHECK_FALSE(is_valid_file_name("caf\xc3\xa9"));
}

TEST_CASE("request lines: a name and an optional decimal offset") {
  auto plain = parse_files_request("data.bin");
  REQUIRE(plain);
  CHECK(plain->name == "data.bin");
  CHECK(plain->offset == 0);
  auto resumed = parse_files_request("data.bin 12345");
  REQUIRE(resumed);
  CHECK(resumed->name == "data.bin");
  CHECK(resumed->offset == 12345);
  auto largest = parse_files_request("f 18446744073709551615");
  REQUIRE(largest);
  CHECK(largest->offset == UINT64_MAX);
}

TEST_CASE("request lines with a bad name or offset are refused") {
  for (const char* line : {"", "../x", "a/b", " 5", "..", "a\r"}) {
    auto request = parse_files_request(line);
    INFO("line: ", line);
    REQUIRE_FALSE(request);
    CHECK(request.error() == FilesRequestError::bad_name);
  }
  for (const char* line : {"f ", "f -1", "f +1", "f 1 ", "f  1", "f 1x", "f 0x10", "f 18446744073709551616"}) {
    auto request = parse_files_request(line);
    INFO("line: ", line);
    REQUIRE_FALSE(request);
    CHECK(request.error() == FilesRequestError::bad_offset);
  }
}

}  // namespace

TEST_CASE("a files state rebased for a resume moves its offset by the shift, within the file") {
  roam::FilesState sending;
  sending.phase = roam::FilesPhase::sending;
  sending.name = "big.bin";
  sending.offset = 1000;
  sending.size = 5000;
  auto forward = roam::rebase_files_state(sending, 2500);
  REQUIRE(forward.has_value());
  CHECK(forward->offset == 3500);
  CHECK(forward->name == "big.bin");
  CHECK(roam::rebase_files_state(sending, -1000)->offset == 0);
  CHECK(roam::rebase_files_state(sending, 4000)->offset == 5000);
  CHECK_FALSE(roam::rebase_files_state(sending, -1001).has_value());
  CHECK_FALSE(roam::rebase_files_state(sending, 4001).has_value());
  roam::FilesState reading;  // no file yet: nothing to regenerate from
  CHECK_FALSE(roam::rebase_files_state(reading, 0).has_value());
}

// The options of a SYN a listener negotiates, and the SYN-ACK's options built from them.
#include "stack/wire/syn_options.hpp"

#include <doctest/doctest.h>

#include <array>

TEST_CASE("SYN options: MSS, window scale, SACK-permitted and timestamps are read; bad lengths stop") {
  using roam::wire::parse_syn_options;
  const std::array<uint8_t, 20> linux_syn{2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 1, 0, 0, 0, 0, 0, 1, 3, 3, 7};
  auto o = parse_syn_options(linux_syn);
  CHECK(o.mss == 1460);
  CHECK(o.sack_permitted);
  CHECK(o.timestamp == 256);
  CHECK(o.window_scale == 7);
  const std::array<uint8_t, 8> bad_length{2, 4, 0x05, 0xb4, 3, 4, 7, 0};
  o = parse_syn_options(bad_length);
  CHECK(o.mss == 1460);
  CHECK(!o.window_scale);
  const std::array<uint8_t, 3> truncated{2, 4, 0x05};
  CHECK(!parse_syn_options(truncated).mss);
  const std::array<uint8_t, 2> zero_length{30, 0};
  CHECK(!parse_syn_options(zero_length).mss);

  std::array<uint8_t, roam::wire::synack_options_max> out{};
  CHECK(roam::wire::write_synack_options(out, 1460, 7) == 8);
  o = parse_syn_options(out);
  CHECK(o.mss == 1460);
  CHECK(o.window_scale == 7);
  CHECK(roam::wire::write_synack_options(out, 1400, std::nullopt) == 4);
}

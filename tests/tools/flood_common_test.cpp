// tools/bench/flood_common: the bounds and checks every flood generator relies on to stop
// and to spoof only from the benchmarking range.
#include "tools/bench/flood_common.hpp"

#include <doctest/doctest.h>

namespace roam::bench {

TEST_CASE("flood options: only whole-string numbers are numbers") {
  CHECK(parse_whole_integer("170000") == 170000);
  CHECK(parse_whole_integer("-3") == -3);
  CHECK_FALSE(parse_whole_integer(""));
  CHECK_FALSE(parse_whole_integer("12x"));
  CHECK_FALSE(parse_whole_integer("1e5"));
  CHECK_FALSE(parse_whole_integer("99999999999999999999"));
  CHECK(parse_finite_number("2.5") == 2.5);
  CHECK(parse_finite_number("1e5") == 100000.0);
  CHECK_FALSE(parse_finite_number(""));
  CHECK_FALSE(parse_finite_number("4s"));
  CHECK_FALSE(parse_finite_number("inf"));
  CHECK_FALSE(parse_finite_number("nan"));
}

TEST_CASE("flood sources: 198.18.0.0/15 and nothing else") {
  CHECK(in_benchmark_range(0xc6120000u));   // 198.18.0.0
  CHECK(in_benchmark_range(0xc613ffffu));   // 198.19.255.255
  CHECK_FALSE(in_benchmark_range(0xc611ffffu));  // 198.17.255.255
  CHECK_FALSE(in_benchmark_range(0xc6140000u));  // 198.20.0.0
  CHECK_FALSE(in_benchmark_range(0x0a000001u));  // 10.0.0.1
  CHECK(prefix_in_benchmark_range(0xc6130000u, 16));  // 198.19.0.0/16
  CHECK(prefix_in_benchmark_range(0xc6120000u, 15));
  CHECK_FALSE(prefix_in_benchmark_range(0xc6120000u, 14));  // would reach 198.16/15
  CHECK_FALSE(prefix_in_benchmark_range(0xc6120000u, 33));
  CHECK_FALSE(prefix_in_benchmark_range(0x0a000000u, 24));
}

TEST_CASE("flood bounds: the count stops it and no batch passes it") {
  const FloodBounds bounds(1000, 3600, 0);
  CHECK(bounds.keep_going(0));
  CHECK(bounds.keep_going(999));
  CHECK_FALSE(bounds.keep_going(1000));
  CHECK(bounds.next_batch(0, 256) == 256);
  CHECK(bounds.next_batch(900, 256) == 100);
  CHECK(bounds.next_batch(1000, 256) == 0);
  CHECK(bounds.next_batch(1200, 256) == 0);
  bounds.pace(1000);  // no rate: returns at once
}

TEST_CASE("flood bounds: the duration stops it") {
  const FloodBounds bounds(1000000, 0.0, 0);
  CHECK_FALSE(bounds.keep_going(0));
  const std::string fields = bounds.result_fields(0);
  CHECK(fields.find("\"sent\": 0, \"seconds\": ") == 0);
  CHECK(fields.find("\"pps\": ") != std::string::npos);
}

}  // namespace roam::bench

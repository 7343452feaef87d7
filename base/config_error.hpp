// ConfigError: the one exception Roamstack throws, for bad start-up configuration (a bad
// option, a key file that cannot be read, a port that cannot be opened). Thrown only while
// a program or an engine object is being set up, never from a loop callback; main catches
// it, prints one line and exits 2.
#pragma once

#include <stdexcept>

namespace roam {

struct ConfigError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace roam

// OptionSpec: what a program's options look like from outside (name, whether a value
// follows, whether it repeats), so that a config file can be turned into the equivalent
// arguments and a command line can be merged over it without knowing what each option
// means. Validation stays in the programs' own parsers (one source of truth).
#pragma once

#include <string>
#include <vector>

namespace roam {

struct OptionSpec {
  enum class Kind {
    value,         // --name VALUE (a string or an integer in a file)
    flag,          // --name (true or false in a file; false: left out)
    on_off,        // --name on|off (a boolean or "on"/"off" in a file)
    positional,    // a bare word (roam-server's mode); `key` names it in a file
  };
  std::string key;     // the key in a config file: the long option without "--"
  std::string option;  // as on the command line ("--listen", "-L"); "" for positional
  Kind kind = Kind::value;
  bool repeatable = false;  // a list in a file; the command line's list replaces the file's
};

using OptionSpecs = std::vector<OptionSpec>;

// Appends `more` to `specs`.
void add_specs(OptionSpecs& specs, const OptionSpecs& more);

// The spec whose option is `arg` ("--listen"), or whose key is `key`; nullptr if none.
const OptionSpec* spec_for_option(const OptionSpecs& specs, const std::string& arg);
const OptionSpec* spec_for_key(const OptionSpecs& specs, const std::string& key);

}  // namespace roam

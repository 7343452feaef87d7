// Config files (TOML, parsed by Debian's toml++): each top-level key is a long option
// without its "--" (`listen = 7000`, `route = ["198.18.12.0/24=127.0.0.1:7101"]`,
// `status-open = true`), turned into the arguments the command line would carry. What a
// value means is checked afterwards by the program's own option parser; each argument
// remembers its file, line and key so that the parser's complaint can name them.
// Start-up only: errors throw ConfigError ("server.toml:7: unknown key 'listn'").
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "apps/option_spec.hpp"

namespace roam {

struct Arguments {
  std::vector<std::string> args;     // without the program name
  std::vector<std::string> origins;  // per argument: "FILE:LINE: key 'KEY'", or "" (command line)
};

// Translates the text of a config file named `file_name` (for messages). Throws ConfigError.
Arguments config_file_arguments(std::string_view text, const std::string& file_name, const OptionSpecs& specs);

// Reads and translates the file at `path`. Throws ConfigError.
Arguments read_config_file(const std::string& path, const OptionSpecs& specs);

}  // namespace roam

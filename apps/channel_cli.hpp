// Command-line options of the control channel, shared by roam-server and roam-client
// (they fill a ChannelOptions). Start-up only; errors throw ConfigError.
#pragma once

#include <string>

#include "apps/option_spec.hpp"
#include "stack/control/channel_options.hpp"

namespace roam {

// Consumes argv[i] (and its value) when it is a channel option. Throws ConfigError.
bool parse_channel_option(int argc, char** argv, int& i, ChannelOptions& options, bool client);
std::string channel_options_help(bool client);
// The shapes of the options above, for config files.
OptionSpecs channel_option_specs(bool client);

}  // namespace roam

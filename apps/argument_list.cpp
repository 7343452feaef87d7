#include "apps/argument_list.hpp"

#include <set>

#include "base/config_error.hpp"

namespace roam {
namespace {

// What a command line sets, read with the specs: which keys and whether the positional
// argument appear (they replace the file's, which is then never parsed: a bad value in
// the file can be overridden), with --config FILE dropped.
struct CommandLineScan {
  std::vector<std::string> kept;
  std::set<std::string> replaced_keys;
  bool positional = false;
};

CommandLineScan scan(const std::vector<std::string>& command_line, const OptionSpecs& specs) {
  CommandLineScan out;
  for (size_t i = 0; i < command_line.size(); ++i) {
    const std::string& arg = command_line[i];
    if (arg == "--config") {
      ++i;  // its value; a missing one was refused by config_path
      continue;
    }
    out.kept.push_back(arg);
    const OptionSpec* spec = spec_for_option(specs, arg);
    if (spec == nullptr) {
      // A bare word that is not an option's value: the positional argument. Anything else
      // unknown is left to the program's parser to refuse.
      if (!arg.empty() && arg[0] != '-') out.positional = true;
      continue;
    }
    out.replaced_keys.insert(spec->key);
    bool takes_next = spec->kind == OptionSpec::Kind::value ||
                      (spec->kind == OptionSpec::Kind::on_off && i + 1 < command_line.size() &&
                       (command_line[i + 1] == "on" || command_line[i + 1] == "off"));
    if (takes_next && i + 1 < command_line.size()) out.kept.push_back(command_line[++i]);
  }
  return out;
}

}  // namespace

std::string ArgumentList::config_path(const std::vector<std::string>& command_line) {
  std::string path;
  bool seen = false;
  for (size_t i = 0; i < command_line.size(); ++i) {
    if (command_line[i] != "--config") continue;
    if (seen) throw ConfigError("--config given twice: one file per run");
    if (i + 1 >= command_line.size()) throw ConfigError("option --config needs a value");
    seen = true;
    path = command_line[++i];
  }
  return path;
}

ArgumentList ArgumentList::from_main(int argc, char** argv, const OptionSpecs& specs) {
  std::vector<std::string> command_line(argv + 1, argv + argc);
  std::string path = config_path(command_line);
  Arguments file;
  if (!path.empty()) file = read_config_file(path, specs);
  return merge(argc > 0 ? argv[0] : "", file, command_line, specs);
}

ArgumentList ArgumentList::merge(const std::string& program, const Arguments& file,
                                 const std::vector<std::string>& command_line, const OptionSpecs& specs) {
  config_path(command_line);  // refuses a malformed --config
  CommandLineScan given = scan(command_line, specs);
  std::vector<std::string> args{program};
  std::vector<std::string> origins{""};
  // The file's arguments come in (option, value...) runs that start at an option or, for
  // the positional, are one word; each run has one origin.
  for (size_t i = 0; i < file.args.size();) {
    const OptionSpec* spec = spec_for_option(specs, file.args[i]);
    size_t length = 1;
    bool drop = false;
    if (spec == nullptr) {
      drop = given.positional;  // the mode
    } else {
      bool with_value = spec->kind == OptionSpec::Kind::value || spec->kind == OptionSpec::Kind::on_off;
      if (with_value && i + 1 < file.args.size()) length = 2;
      drop = given.replaced_keys.count(spec->key) != 0;
    }
    if (!drop)
      for (size_t k = i; k < i + length; ++k) {
        args.push_back(file.args[k]);
        origins.push_back(file.origins[k]);
      }
    i += length;
  }
  for (const auto& arg : given.kept) {
    args.push_back(arg);
    origins.emplace_back();
  }
  return ArgumentList(std::move(args), std::move(origins));
}

ArgumentList::ArgumentList(std::vector<std::string> args, std::vector<std::string> origins)
    : args_(std::move(args)), origins_(std::move(origins)) {
  for (auto& arg : args_) pointers_.push_back(arg.data());
  pointers_.push_back(nullptr);
}

bool ArgumentList::at(int i) {
  if (i >= 0 && i < argc()) {
    current_ = i;
    return true;
  }
  current_ = -1;  // past the end: the parser's checks of the whole now run
  return false;
}

std::string ArgumentList::with_origin(const std::string& message) const {
  if (current_ < 0 || current_ >= static_cast<int>(origins_.size()) || origins_[current_].empty()) return message;
  return origins_[current_] + ": " + message;
}

}  // namespace roam

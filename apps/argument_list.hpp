// ArgumentList: a program's arguments after `--config FILE` is expanded: the file's options,
// then the command line's. The command line wins: an option (or the mode) given there
// removes the file's (for a repeatable option, the file's whole list), so the parser
// never sees the file's value. Each argument keeps where it came from, so that a parser's
// complaint about a file's value names the file, line and key (with_origin).
#pragma once

#include <string>
#include <vector>

#include "apps/config_file.hpp"
#include "apps/option_spec.hpp"

namespace roam {

class ArgumentList {
 public:
  // argv as main() got it; reads the --config file if one is named. Throws ConfigError.
  static ArgumentList from_main(int argc, char** argv, const OptionSpecs& specs);
  // The same from parts (tests): `command_line` without the program name; `file` from
  // config_file_arguments. `--config FILE` in the command line is dropped.
  static ArgumentList merge(const std::string& program, const Arguments& file,
                            const std::vector<std::string>& command_line, const OptionSpecs& specs);

  // The file named by --config in `command_line`, or "". Throws ConfigError when --config
  // lacks its value or is given twice.
  static std::string config_path(const std::vector<std::string>& command_line);

  ArgumentList(ArgumentList&&) = default;  // argv() points into the strings: no copies
  ArgumentList(const ArgumentList&) = delete;
  ArgumentList& operator=(const ArgumentList&) = delete;

  int argc() const { return static_cast<int>(pointers_.size()) - 1; }
  char** argv() { return pointers_.data(); }
  const std::vector<std::string>& args() const { return args_; }  // args_[0]: the program

  // For a parser's loop, `for (int i = 1; list.at(i); ++i)`: notes that the option at
  // argv[i] is being parsed (so an error can be placed) and says whether i is in range.
  bool at(int i);
  // `message`, prefixed with the file, line and key of the option being parsed when that
  // came from a config file.
  std::string with_origin(const std::string& message) const;

 private:
  ArgumentList(std::vector<std::string> args, std::vector<std::string> origins);
  std::vector<std::string> args_;
  std::vector<std::string> origins_;
  std::vector<char*> pointers_;
  int current_ = -1;
};

}  // namespace roam

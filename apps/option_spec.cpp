#include "apps/option_spec.hpp"

namespace roam {

void add_specs(OptionSpecs& specs, const OptionSpecs& more) {
  specs.insert(specs.end(), more.begin(), more.end());
}

const OptionSpec* spec_for_option(const OptionSpecs& specs, const std::string& arg) {
  if (arg.empty() || arg[0] != '-') return nullptr;
  for (const auto& spec : specs)
    if (spec.kind != OptionSpec::Kind::positional && spec.option == arg) return &spec;
  return nullptr;
}

const OptionSpec* spec_for_key(const OptionSpecs& specs, const std::string& key) {
  for (const auto& spec : specs)
    if (spec.key == key) return &spec;
  return nullptr;
}

}  // namespace roam

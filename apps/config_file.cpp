#include "apps/config_file.hpp"

#include <algorithm>
#include <fstream>
#include <sstream>
#include <toml++/toml.h>

#include "base/config_error.hpp"

namespace roam {
namespace {

std::string type_name(const toml::node& node) {
  switch (node.type()) {
    case toml::node_type::table: return "a table";
    case toml::node_type::array: return "an array";
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a float";
    case toml::node_type::boolean: return "a boolean";
    case toml::node_type::date: return "a date";
    case toml::node_type::time: return "a time";
    case toml::node_type::date_time: return "a date-time";
    default: return "nothing";
  }
}

std::string where(const std::string& file, const toml::source_region& region, const std::string& key) {
  return file + ":" + std::to_string(region.begin.line) + ": key '" + key + "'";
}

class Translator {
 public:
  Translator(const std::string& file, Arguments& out) : file_(file), out_(out) {}

  void add(const OptionSpec& spec, const std::string& key, const toml::node& node) {
    std::string origin = where(file_, node.source(), key);
    if (spec.repeatable) {
      if (const auto* array = node.as_array()) {
        for (const auto& element : *array) add_one(spec, where(file_, element.source(), key), element);
        return;
      }
    }
    if (node.is_array() || node.is_table())
      throw ConfigError(origin + ": expected " + expected(spec) + ", got " + type_name(node));
    add_one(spec, origin, node);
  }

 private:
  static std::string expected(const OptionSpec& spec) {
    using Kind = OptionSpec::Kind;
    std::string one = spec.kind == Kind::flag         ? "true or false"
                      : spec.kind == Kind::on_off     ? "true, false, \"on\" or \"off\""
                      : spec.kind == Kind::positional ? "a string"
                                                      : "a string or an integer";
    return spec.repeatable ? one + " (or a list of them)" : one;
  }

  void push(const std::string& text, const std::string& origin) {
    out_.args.push_back(text);
    out_.origins.push_back(origin);
  }

  void add_one(const OptionSpec& spec, const std::string& origin, const toml::node& node) {
    using Kind = OptionSpec::Kind;
    auto bad_type = [&] { return ConfigError(origin + ": expected " + expected(spec) + ", got " + type_name(node)); };
    switch (spec.kind) {
      case Kind::flag: {
        const auto* value = node.as_boolean();
        if (value == nullptr) throw bad_type();
        if (value->get()) push(spec.option, origin);  // false: the option's default
        return;
      }
      case Kind::on_off: {
        std::string word;
        if (const auto* b = node.as_boolean())
          word = b->get() ? "on" : "off";
        else if (const auto* s = node.as_string())
          word = s->get();
        else
          throw bad_type();
        if (word != "on" && word != "off") throw ConfigError(origin + ": expected true, false, \"on\" or \"off\"");
        push(spec.option, origin);
        push(word, origin);
        return;
      }
      case Kind::positional: {
        const auto* s = node.as_string();
        if (s == nullptr) throw bad_type();
        push(s->get(), origin);
        return;
      }
      case Kind::value: {
        std::string text;
        if (const auto* s = node.as_string())
          text = s->get();
        else if (const auto* i = node.as_integer())
          text = std::to_string(i->get());  // a negative one fails in the option's parser
        else
          throw bad_type();
        push(spec.option, origin);
        push(text, origin);
        return;
      }
    }
  }

  const std::string& file_;
  Arguments& out_;
};

}  // namespace

Arguments config_file_arguments(std::string_view text, const std::string& file_name, const OptionSpecs& specs) {
  toml::table table;
  try {
    table = toml::parse(text, file_name);
  } catch (const toml::parse_error& e) {
    // toml++ reports duplicate keys, bad syntax and bad escapes here, with their position.
    throw ConfigError(file_name + ":" + std::to_string(e.source().begin.line) + ": " + std::string(e.description()));
  }
  // In file order, so that a message names the first problem a reader meets.
  std::vector<std::pair<std::string, const toml::node*>> entries;
  for (const auto& [key, node] : table) entries.emplace_back(std::string(key.str()), &node);
  std::stable_sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) {
    return a.second->source().begin.line < b.second->source().begin.line;
  });
  Arguments out;
  Translator translator(file_name, out);
  for (const auto& [key, node] : entries) {
    const OptionSpec* spec = spec_for_key(specs, key);
    if (spec == nullptr)
      throw ConfigError(file_name + ":" + std::to_string(node->source().begin.line) + ": unknown key '" + key +
                        "' (keys are the long options without --; see --help)");
    translator.add(*spec, key, *node);
  }
  return out;
}

Arguments read_config_file(const std::string& path, const OptionSpecs& specs) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError("cannot read config file " + path);
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw ConfigError("cannot read config file " + path);
  return config_file_arguments(text.str(), path, specs);
}

}  // namespace roam

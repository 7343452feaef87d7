#include "stack/migrate/address_answer.hpp"

#include <algorithm>

namespace roam::migrate {

namespace {

bool is_feature_word(std::string_view word) {
  return !word.empty() && word.size() <= 32 && std::all_of(word.begin(), word.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  });
}

// Calls `take(word)` for each space-separated word (empty words included); stops when it
// returns false and returns false too.
template <typename Take>
bool for_each_word(std::string_view text, Take take) {
  size_t position = 0;
  while (position <= text.size()) {
    size_t end = std::min(text.find(' ', position), text.size());
    if (!take(text.substr(position, end - position))) return false;
    position = end + 1;
  }
  return true;
}

}  // namespace

std::string encode_address_request(const TransferFeatures& wanted) {
  return wanted.precopy ? std::string(feature_precopy) : std::string();
}

TransferFeatures decode_address_request(std::string_view payload) {
  TransferFeatures asked;
  if (payload.size() > max_feature_text) return asked;
  for_each_word(payload, [&](std::string_view word) {
    if (word == feature_precopy) asked.precopy = true;
    return true;
  });
  return asked;
}

std::string encode_address_answer(const IpAddress& address4, const std::optional<IpAddress>& address6,
                                  const TransferFeatures& announced) {
  std::string out = "address " + address4.to_string();
  if (address6) out += " " + address6->to_string();
  if (announced.precopy) out += " " + std::string(feature_precopy);
  return out;
}

std::optional<AddressAnswer> decode_address_answer(std::string_view text) {
  AddressAnswer out;
  bool first = true;
  size_t features = 0;
  bool ok = for_each_word(text, [&](std::string_view word) {
    if (first) {
      first = false;
      return word == "address";
    }
    // Addresses first (at most two), then feature words only.
    if (features == 0 && out.addresses.size() < 2) {
      if (auto address = IpAddress::parse(word)) {
        out.addresses.push_back(*address);
        return true;
      }
    }
    if (out.addresses.empty() || !is_feature_word(word) || ++features > max_feature_words) return false;
    if (word == feature_precopy) out.features.precopy = true;
    return true;
  });
  if (!ok || out.addresses.empty()) return std::nullopt;
  return out;
}

}  // namespace roam::migrate

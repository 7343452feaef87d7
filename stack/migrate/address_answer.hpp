// The target's answer to address_request (docs/PROTOCOL.md 4.3): its carrier addresses
// and, when the asking server named them in its request, the optional transfer features
// it accepts (today only `precopy`). Pure text codec: no I/O. Any thread.
//
//   request payload   "" or feature words: "precopy"          old server -> new server
//   answer (reply)    "address IPV4[ IPV6][ FEATURE ...]"      new server -> old server
//
// Features travel only when asked for: a server that predates them sends an empty
// request and gets the bare "address ..." it always parsed (its parser refuses any other
// word), and a target that predates them ignores the request's payload and answers
// without features, which reads as "accepts none".
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/ip_address.hpp"

namespace roam::migrate {

// The feature words this build knows.
inline constexpr std::string_view feature_precopy = "precopy";

struct TransferFeatures {
  bool precopy = false;  // takes precopy / precopy_sync frames (PROTOCOL.md 4.3 "Pre-copy")
};

// The request's payload asking about `wanted` (empty: ask nothing, the old form).
std::string encode_address_request(const TransferFeatures& wanted);
// What a request asked about; unknown words are ignored (a newer sender may ask more).
// A payload longer than max_feature_text is asked nothing.
TransferFeatures decode_address_request(std::string_view payload);

// The answer: "address " + IPv4 [+ " " + IPv6] + the features both asked and accepted.
std::string encode_address_answer(const IpAddress& address4, const std::optional<IpAddress>& address6,
                                  const TransferFeatures& announced);

struct AddressAnswer {
  std::vector<IpAddress> addresses;  // 1 or 2
  TransferFeatures features;
};
// "address A[ A6][ FEATURE ...]": one or two addresses, then at most max_feature_words
// words of [a-z0-9_], each 1-32 characters; unknown feature words are ignored. Anything
// else (another first word, no address, a third address, an address after a feature, a
// malformed word, an empty word from a doubled space): nullopt.
std::optional<AddressAnswer> decode_address_answer(std::string_view text);

inline constexpr size_t max_feature_words = 8;
inline constexpr size_t max_feature_text = 256;

}  // namespace roam::migrate

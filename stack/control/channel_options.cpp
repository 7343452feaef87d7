#include "stack/control/channel_options.hpp"

#include "base/config_error.hpp"
#include "base/log.hpp"

namespace roam {

std::unique_ptr<crypto::IdentityKey> load_identity(const ChannelOptions& options) {
  if (options.key_file.empty()) {
    auto key = std::make_unique<crypto::IdentityKey>(crypto::IdentityKey::generate());
    logger("channel")->info("identity key: fresh for this run, public key {} (give --key to keep one)",
                            crypto::to_base64(key->public_key()));
    return key;
  }
  auto key = crypto::IdentityKey::load(options.key_file);
  if (!key) throw ConfigError("cannot use --key '" + options.key_file + "': " + crypto::key_error_name(key.error()));
  auto owned = std::make_unique<crypto::IdentityKey>(std::move(key.value()));
  logger("channel")->info("identity key {}: public key {}", options.key_file, crypto::to_base64(owned->public_key()));
  return owned;
}

}  // namespace roam

// libFuzzer target for client-held checkpoints (stack/migrate/checkpoint.hpp;
// docs/PROTOCOL.md 14): the sealed bytes a client presents in a RESUME. Reading the header
// and opening must not crash, and nothing the fuzzer makes opens (it would have to forge
// the AEAD tag); aligning any sequence view to a state-only snapshot must not crash.
#include <cstddef>
#include <cstdint>
#include <span>

#include "stack/migrate/checkpoint.hpp"
#include "stack/migrate/resume_alignment.hpp"

namespace {

void check(bool condition) {
  if (!condition) __builtin_trap();
}

const roam::migrate::CheckpointKey& fuzz_key() {
  static const roam::migrate::CheckpointKey key = [] {
    roam::crypto::ChainKey seed{};
    seed.fill(0x5e);
    return roam::migrate::CheckpointKey::derive(seed);
  }();
  return key;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> bytes(data, size);
  auto header = roam::migrate::peek_checkpoint_header(bytes);
  if (!header) return 0;
  // Random bytes never authenticate (2^-128).
  auto opened = roam::migrate::open_checkpoint(fuzz_key(), bytes, header->client_key, header->connection_id,
                                               {header->generation, 0, 60000});
  check(!opened.has_value());
  // The alignment of any view to a state-only snapshot never crashes.
  roam::wire::ConnectionSnapshot s;
  s.local_address = *roam::IpAddress::parse("198.18.0.1");
  s.remote_address = *roam::IpAddress::parse("198.18.0.2");
  s.local_port = s.remote_port = 7000;
  s.connection_id = header->connection_id;
  s.send.mss = 1460;
  s.send.rto = 6;
  (void)roam::migrate::align_to_client(s, {static_cast<uint32_t>(header->generation),
                                           static_cast<uint32_t>(header->connection_id),
                                           static_cast<uint32_t>(header->connection_id >> 32)});
  return 0;
}

// EngineLab: the move engine in one LwipLab (tests/stack/migrate/engine_test.cpp and
// precopy_engine_test.cpp): a client, old server A with an echo session, an Importer at B,
// the client's Follower, and an in-process TransferLink between A's Exporter and B.
// Loop thread only.
#pragma once

#include <doctest/doctest.h>

#include <functional>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "apps/builtin_sessions.hpp"
#include "apps/echo_app.hpp"
#include "base/clock.hpp"
#include "crypto/pool_certificate.hpp"
#include "crypto/sodium.hpp"
#include "stack/migrate/exporter.hpp"
#include "stack/migrate/follower.hpp"
#include "stack/migrate/importer.hpp"
#include "support/engine_fakes.hpp"
#include "support/lwip_lab.hpp"

namespace roam::testing {

using Table = FakeSessionTable;
using Directory = FakeClientDirectory;
using Loopback = LoopbackTransfer;

struct EngineLab {
  LwipLab lab{4, [this](tcp_pcb* pcb) {
                table.adopt(std::make_unique<EchoSession>(*lab.node, EchoSession::Mode::echo, pcb,
                                                          table.finished_callback()));
                return true;
              }};
  Table table;
  Directory directory;
  std::unique_ptr<migrate::Importer> importer;  // B's
  migrate::MigrationGuard old_guard{*lab.node};  // A's
  std::unique_ptr<Follower> follower;            // the client's
  std::vector<migrate::ChangeoverReport> followed;
  Loopback link;
  std::optional<migrate::ExportReport> report;

  EngineLab() {
    table.kinds_ = builtin_session_kinds(SessionContext{lab.node.get(), ""});
    migrate::ImportConfig config;
    config.address4 = lab.b();
    importer = std::make_unique<migrate::Importer>(*lab.node, table, config);
    ChannelOptions options;
    Follower::Events events;
    events.on_moved = [this](const migrate::ChangeoverReport& r) { followed.push_back(r); };
    follower = std::make_unique<Follower>(*lab.node, options, std::move(events));
    link.importer = importer.get();
    link.node = lab.node.get();
    lab.connect([this] { return !table.sessions().empty(); });
  }
  ~EngineLab() {
    follower->close();
    importer->shutdown();
    for (auto* s : table.sessions()) s->close();
    lab.run([] { return false; }, 50);
  }

  // Runs a whole move of every session to B; answers are delivered as they come.
  // Pre-copy (policy.precopy): rounds while the exporter wants them, each answered by B's
  // store as its sync would be; `between_rounds` runs after each (the connection goes on).
  migrate::ExportPolicy policy;
  std::function<void()> between_rounds;
  bool target_accepts_precopy = true;  // what B's address answer announced

  migrate::ExportReport move(uint64_t timeout_ms = 10'000, bool connect_ok = true) {
    report.reset();
    policy.timeout_ms = timeout_ms;
    migrate::Exporter exporter({*lab.node, table, old_guard, directory, nullptr}, policy, "b", table.sessions(),
                               uv_now(lab.node->loop()), [this](const migrate::ExportReport& r) { report = r; });
    if (connect_ok) {
      exporter.decide_precopy(target_accepts_precopy);
      // As MigrationService::precopy_or_start: plain rounds, then the held round.
      auto round = [&]() -> uint64_t {
        if (exporter.precopy_wants_round())
          if (uint64_t sent = exporter.precopy_round(link); sent > 0) return sent;
        return exporter.precopy_wants_held_round() ? exporter.precopy_held_round(link) : 0;
      };
      while (round() > 0) {
        REQUIRE_FALSE(link.syncs.empty());
        auto held = link.syncs.front();
        link.syncs.pop_front();
        if (between_rounds) between_rounds();
        exporter.precopy_confirmed(held);
      }
      exporter.start(link);
      while (!link.answers.empty() && !exporter.finished()) {
        exporter.on_result(link.answers.front());
        link.answers.pop_front();
      }
    } else {
      exporter.abandon("cannot connect to b");
    }
    REQUIRE(report.has_value());
    return *report;
  }

  control::AddressChange acm_for(const migrate::ExportReport& r, uint64_t sequence) {
    control::AddressChange acm;
    acm.sequence = sequence;
    randombytes_buf(acm.nonce.data(), acm.nonce.size());
    acm.issued_at_ms = unix_ms();
    acm.scope = control::AcmScope::connections;
    acm.old_address = lab.a();
    acm.old_port = testing::lab_port;
    acm.new_address = r.new_address;
    acm.new_port = testing::lab_port;
    for (const auto& m : directory.announced) acm.connection_ids.push_back(m.connection_id);
    if (!directory.announced.empty()) acm.handover_token = directory.announced.front().token;
    auto certificate = crypto::encode_certificate(pool.admit(target_key.public_key(), 0));
    acm.target_credential.assign(certificate.begin(), certificate.end());
    return acm;
  }

  // The pool A and B belong to (as the client learned from A's HELLO), and B's key.
  crypto::PoolSigningKey pool = crypto::PoolSigningKey::generate();
  crypto::IdentityKey target_key = crypto::IdentityKey::generate();
  std::optional<crypto::PoolPublicKey> pool_of_a() const { return pool.public_key(); }

  tcp_pcb* client_pcb() { return lab.client.connection->pcb(); }
};

inline crypto::PublicKey some_key() {
  crypto::PublicKey key{};
  key.fill(7);
  return key;
}

}  // namespace roam::testing

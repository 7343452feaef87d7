// The move engine's collaborators as fakes, for tests that drive an Exporter and an
// Importer inside one LwipLab: a server's session table, a client directory that records
// what it was told, and a TransferLink that hands each session frame straight to an
// Importer and queues its answers. Loop thread only.
#pragma once

#include <uv.h>

#include <deque>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "stack/migrate/exporter.hpp"
#include "stack/migrate/importer.hpp"
#include "stack/migrate/precopy.hpp"

namespace roam::testing {

// A server's session table, as roam-server keeps it.
struct FakeSessionTable final : SessionTable {
  SessionKinds kinds_;
  std::vector<std::unique_ptr<MovableSession>> owned;
  std::vector<MovableSession*> sessions() override {
    std::vector<MovableSession*> out;
    for (auto& s : owned)
      if (s) out.push_back(s.get());
    return out;
  }
  void drop(MovableSession* session) override {
    for (auto& s : owned)
      if (s.get() == session) s.reset();
  }
  void adopt(std::unique_ptr<MovableSession> session) override { owned.push_back(std::move(session)); }
  MovableSession::FinishedFn finished_callback() override {
    return [](MovableSession*) {};
  }
  const SessionKinds& kinds() const override { return kinds_; }
};

// Every connection has one client; moves are recorded for the test to deliver.
struct FakeClientDirectory final : migrate::ClientDirectory {
  const void* client = this;
  std::vector<migrate::MovedConnection> announced;
  IpAddress new_address;
  const void* client_of(uint64_t) override { return client; }
  void announce(std::span<const migrate::MovedConnection> moved, const IpAddress& address) override {
    announced.assign(moved.begin(), moved.end());
    new_address = address;
  }
};

// Session frames go straight to the Importer (with what was pre-copied to it); its answers
// queue for the test to deliver,
// as a socket would (never inside the exporter's own call). Every payload sent is kept.
struct LoopbackTransfer final : migrate::TransferLink {
  migrate::Importer* importer = nullptr;
  Node* node = nullptr;
  bool refuse_all = false;
  std::deque<migrate::SessionResult> answers;
  std::vector<std::vector<uint8_t>> payloads;
  void send_session(std::vector<uint8_t> frame) override {
    // The frame's 5-byte header (length, type), then the session payload.
    payloads.emplace_back(frame.begin() + 5, frame.end());
    if (refuse_all) {
      answers.push_back({false, "refused by the test"});
      return;
    }
    auto result = importer->import_session(payloads.back(), uv_now(node->loop()), &store);
    answers.push_back(result ? migrate::SessionResult{true, result->to_string()}
                             : migrate::SessionResult{false, result.error()});
  }
  // precopy frames go to B's store; a precopy_sync queues the answer B would send: the
  // bytes held, or nullopt when it refused some.
  size_t precopy_in_use = 0;
  migrate::PrecopyStore store{256u << 20, precopy_in_use};
  std::deque<std::optional<uint64_t>> syncs;
  bool refuse_precopy = false;  // B refuses every chunk (as over its budget)
  void send_frame(std::vector<uint8_t> frame) override {
    auto type = static_cast<migrate::FrameType>(frame.at(4));
    std::span<const uint8_t> payload(frame.data() + 5, frame.size() - 5);
    if (type == migrate::FrameType::precopy) {
      auto chunk = migrate::decode_precopy_payload(payload);
      if (!chunk || refuse_precopy)
        store.note_refused();
      else
        store.take(*chunk);
    } else if (type == migrate::FrameType::precopy_sync) {
      syncs.push_back(store.take_refusals() == 0 ? std::optional<uint64_t>(store.held_bytes()) : std::nullopt);
    } else {
      send_session(std::move(frame));
    }
  }
  // Delivers the queued answers to `exporter` until it finished or none is left.
  void deliver(migrate::Exporter& exporter) {
    while (!answers.empty() && !exporter.finished()) {
      exporter.on_result(answers.front());
      answers.pop_front();
    }
  }
};

}  // namespace roam::testing

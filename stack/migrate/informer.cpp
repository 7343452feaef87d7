// Seed 004's Informer, as part of the MigrationService (migration_service.hpp): the
// attacked server's side (inform: ratify at the next proxy, notify the clients, move the
// sessions) and the next proxy's (take_ratify: whitelist the ratified clients).
#include <fmt/format.h>

#include <algorithm>

#include "base/clock.hpp"
#include "base/log.hpp"
#include "base/socket_address.hpp"
#include "stack/migrate/migration_service.hpp"

namespace roam {

namespace {

bool same_address_in(const std::vector<IpAddress>& list, const IpAddress& address) {
  return std::any_of(list.begin(), list.end(), [&](const IpAddress& a) { return a == address; });
}

}  // namespace

bool MigrationService::inform(std::string target, std::string reason, InformDoneFn done, std::string& error) {
  if (target.empty()) target = config_.next_proxy;
  if (shut_down_) {
    error = "server shutting down";
    return false;
  }
  if (inform_) {
    error = "an inform is already running (to " + inform_->target + ")";
    return false;
  }
  if (exporter_) {
    error = "a migration is already running";
    return false;
  }
  if (target.empty()) {
    error = "no next proxy: start the server with --next-proxy HOST:PORT or name one (to=HOST:PORT)";
    return false;
  }
  if (!pool_certificate_) {
    error = "this server is in no pool (--pool-cert): it informs only toward members of its pool";
    return false;
  }
  sockaddr_storage address{};
  socklen_t length = 0;
  if (!parse_socket_address(target, address, length)) {
    error = "bad target '" + target + "': expected IP:PORT";
    return false;
  }
  ++counters_.informs_started;
  auto run = std::make_unique<InformRun>();
  run->target = target;
  run->reason = std::move(reason);
  run->done = std::move(done);
  run->started_ms = uv_now(node_.loop());
  // The verified clients: every channel whose Noise handshake completed. One entry per
  // address (clients behind one NAT share it).
  for (ChannelConnection* channel : channels_->established_channels())
    if (!same_address_in(run->clients, channel->peer_address())) run->clients.push_back(channel->peer_address());
  run->stream = std::make_unique<FrameStream>(
      node_.loop(),
      [this](FrameStream& s, migrate::Frame f) {
        if (inform_ && inform_->stream.get() == &s) on_inform_answer(f);
      },
      [this](FrameStream& s, const std::string& why) {
        if (inform_ && inform_->stream.get() == &s && !inform_->moving)
          finish_inform("error the next proxy " + inform_->target + ": " +
                            (inform_->refusal.empty() ? why : inform_->refusal) + "; nothing was sent",
                        false);
      });
  run->stream->secure(std::make_unique<crypto::NoiseStream>(crypto::NoiseRole::initiator, *key_, credential_),
                      [this](FrameStream& s) {
                        // The same check as a move's target: a member of this server's pool.
                        const auto& noise = *s.noise();
                        auto verified = crypto::verify_certificate(noise.peer_credential(), noise.remote_static(),
                                                                   pool_certificate_->pool, unix_ms() / 1000);
                        if (!inform_) return false;
                        if (!verified) {
                          ++counters_.targets_refused;
                          inform_->refusal = fmt::format(
                              "not a member of this pool ({})",
                              noise.peer_credential().empty() ? "no pool certificate"
                                                              : crypto::certificate_error_name(verified.error()));
                          return false;
                        }
                        inform_->target_credential = noise.peer_credential();
                        return true;
                      });
  inform_ = std::move(run);
  logger("migrate")->warn("informing {} verified client address(es): they go to {} ({})", inform_->clients.size(),
                          target, inform_->reason);
  if (!inform_->stream->connect(reinterpret_cast<const sockaddr*>(&address), [](FrameStream& s) {
        s.send(migrate::FrameType::address_request, std::string_view());
      })) {
    finish_inform("error cannot connect to " + target + ": nothing was sent", false);
  }
  return true;
}

void MigrationService::on_inform_answer(const migrate::Frame& frame) {
  InformRun& run = *inform_;
  if (run.moving) return;
  std::string text;
  if (frame.type == migrate::FrameType::reply)
    text.assign(frame.payload.begin(),
                frame.payload.begin() + static_cast<std::ptrdiff_t>(std::min<size_t>(frame.payload.size(), 200)));
  if (!run.addresses_known) {
    run.target_addresses = migrate::parse_address_answer(text);
    if (run.target_addresses.empty()) {
      ++counters_.bad_frames;
      finish_inform("error the next proxy did not tell its carrier addresses (it answered '" + text +
                        "'): nothing was sent",
                    false);
      return;
    }
    run.addresses_known = true;
    // No verified client: nothing to ratify (an empty RATIFY would shut the next proxy to
    // every new client for the hold time), nobody to notify; sessions without a channel
    // stay ("no channel").
    if (run.clients.empty()) {
      notify_and_move(run);
      return;
    }
    // RATIFY first: the next proxy must admit the clients before any of them is sent there.
    const uint64_t now = unix_ms();
    size_t offset = 0;
    do {
      migrate::Ratify ratify;
      ratify.sequence = next_ratify_sequence_++;
      ratify.issued_at_ms = now;
      ratify.hold_s = static_cast<uint32_t>(
          std::clamp<uint64_t>(config_.inform_hold_ms / 1000, 1, migrate::max_ratify_hold_s));
      size_t n = std::min(migrate::max_ratify_addresses, run.clients.size() - offset);
      ratify.addresses.assign(run.clients.begin() + static_cast<std::ptrdiff_t>(offset),
                              run.clients.begin() + static_cast<std::ptrdiff_t>(offset + n));
      offset += n;
      run.stream->send(migrate::FrameType::ratify, migrate::encode_ratify(ratify));
      ++run.ratify_frames;
    } while (offset < run.clients.size());
    return;
  }
  if (text.rfind("ok", 0) != 0) {
    finish_inform("error the next proxy refused the ratification (" + text + "): no client was told", false);
    return;
  }
  if (++run.ratify_answers < run.ratify_frames) return;
  notify_and_move(run);
}

void MigrationService::notify_and_move(InformRun& run) {
  run.moving = true;  // before the close: its callback must not end the inform
  run.stream->close_after_writes();
  counters_.inform_clients += run.clients.size();
  send_transfers(run);
  if (config_.whitelist_after_inform && config_.whitelist && !run.clients.empty())
    config_.whitelist(run.clients, config_.inform_hold_ms);
  std::string error;
  MoveRequest request;
  request.target = run.target;
  bool started = move_sessions(
      std::move(request),
      [this](const migrate::ExportReport& report) {
        if (!inform_) return;
        std::string moved = report.ok() ? fmt::format("moved {} of {} sessions", report.moved, report.candidates)
                                        : fmt::format("moved {} of {} sessions; {} failed: {}", report.moved,
                                                      report.candidates, report.failed, report.error);
        if (std::string stayed = migrate::stayed_summary(report); report.ok() && !stayed.empty())
          moved += " (" + stayed + ")";
        finish_inform(fmt::format("{} informed {} client address(es) ({} notified) of {}; {}",
                                  report.ok() ? "ok" : "error", inform_->clients.size(), inform_->transfers,
                                  inform_->target, moved),
                      report.ok());
      },
      error);
  if (!started)
    finish_inform(fmt::format("error informed {} client address(es) of {}, but the sessions did not move: {}",
                              run.clients.size(), run.target, error),
                  false);
}

// One transfer notification per established channel (not per address: each channel is a
// client with its own follower), naming the next proxy's address of the channel's family.
void MigrationService::send_transfers(InformRun& run) {
  for (ChannelConnection* channel : channels_->established_channels()) {
    const IpAddress& own = channel->peer_address().version == 4 || !config_.address6 ? config_.address4
                                                                                      : *config_.address6;
    auto to = std::find_if(run.target_addresses.begin(), run.target_addresses.end(),
                           [&own](const IpAddress& a) { return a.version == own.version; });
    if (to == run.target_addresses.end()) continue;  // the next proxy has no address of this family
    control::AddressChange transfer;
    transfer.scope = control::AcmScope::transfer;
    transfer.old_address = own;
    transfer.old_port = 0;  // every port of this server
    transfer.new_address = *to;
    transfer.new_port = 0;  // the same ports there
    transfer.target_credential = run.target_credential;
    if (channels_->send_acm(*channel, std::move(transfer))) {
      ++run.transfers;
      ++counters_.transfers_sent;
    }
  }
}

void MigrationService::finish_inform(const std::string& summary, bool ok) {
  if (!inform_) return;
  ++(ok ? counters_.informs_done : counters_.informs_failed);
  if (ok)
    logger("migrate")->warn("{}", summary);
  else
    logger("migrate")->error("{}", summary);
  // Inside the stream's own callback, maybe: destroy the run later.
  InformRun* finished = inform_.release();
  node_.defer([finished] { delete finished; });
  if (finished->done) finished->done(summary);
}

void MigrationService::start_requested_inform(FrameStream& requester, const std::string& text) {
  std::string target;
  if (!text.empty()) {
    if (text.rfind("to=", 0) != 0 || text.find(' ') != std::string::npos) {
      requester.send(migrate::FrameType::reply, "error bad inform request '" + text + "': expected to=HOST:PORT");
      return;
    }
    target = text.substr(3);
  }
  FrameStream* asker = &requester;
  std::string error;
  bool started = inform(
      target, "operator",
      [this, asker](const std::string& summary) {
        if (streams_.count(asker) != 0 && asker->open()) asker->send(migrate::FrameType::reply, summary);
      },
      error);
  if (!started) requester.send(migrate::FrameType::reply, "error " + error);
}

void MigrationService::take_ratify(FrameStream& stream, const migrate::Frame& frame) {
  auto found = streams_.find(&stream);
  const bool member = found != streams_.end() && found->second.peer.pool_member;
  const auto& sender = stream.noise()->remote_static();
  std::string why;
  auto ratify = migrate::decode_ratify(frame.payload);
  if (!ratify) {
    why = std::string("malformed ratify: ") + migrate::ratify_error_name(ratify.error());
  } else if (!config_.whitelist) {
    why = "this server keeps no whitelist";
  } else if (auto verdict = ratify_filter_.check(*ratify, sender, member, unix_ms());
             verdict != migrate::RatifyVerdict::accept) {
    why = std::string("ratify refused: ") + migrate::ratify_verdict_name(verdict);
  }
  if (!why.empty()) {
    ++counters_.ratifies_refused;
    uint64_t suppressed = 0;
    if (refusal_log_.allow(suppressed))
      logger("migrate")->warn("control port: {} (from key {}; {} more not logged)", why, crypto::to_base64(sender),
                              suppressed);
    stream.send(migrate::FrameType::reply, "error " + why);
    return;
  }
  ratify_filter_.remember(*ratify, sender);
  ++counters_.ratifies_accepted;
  counters_.ratified_addresses += ratify->addresses.size();
  config_.whitelist(ratify->addresses, uint64_t{ratify->hold_s} * 1000);
  logger("migrate")->warn("ratified {} client address(es) from pool member {}: whitelist mode for {} s",
                          ratify->addresses.size(), crypto::to_base64(sender), ratify->hold_s);
  stream.send(migrate::FrameType::reply, fmt::format("ok ratified {}", ratify->addresses.size()));
}

}  // namespace roam

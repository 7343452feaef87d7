// resume_probe: a test client that presents chosen RESUME messages (PROTOCOL.md 14.3) to
// live roam-servers over authenticated control channels, for
// tests/integration/checkpoint_refusals_test.py. Never a production tool: it only sends
// what a client (an honest one, or one replaying or lending its checkpoints) could.
//
// It downloads a file from the files service at --server through its own lwIP node,
// registers that connection on a channel with key Y (--key), does NOT read (the window
// closes, so the session stays in its sending phase and keeps being checkpointed), and
// keeps the first --checkpoints distinct generations A pushes, each with its own sequence
// view at the moment it arrived. Then it runs the --resume steps in order, one answer at a
// time, on channels it opened to --server and --next with key Y and with key X
// (--other-key; a fresh key by default), and logs:
//   [probe] checkpoint ID GENERATION             (each one kept, in order: index 1, 2, ...)
//   [probe] step K resumed ID GENERATION STATUS REASON   (each RESUMED, decoded by messages.cpp)
//   [probe] step K no answer
//   [probe] steps done
//   [probe] download eof BYTES SHA256HEX     (then, or on SIGUSR1 with --read-on-signal, it
//                                            reads the download to its end)
#include <sodium.h>
#include <uv.h>

#include <array>
#include <csignal>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "apps/channel_cli.hpp"
#include "apps/cli.hpp"
#include "apps/node_app.hpp"
#include "base/log.hpp"
#include "base/uv_handle.hpp"
#include "stack/connection_id.hpp"
#include "stack/control/channel_connection.hpp"
#include "stack/migrate/checkpoint.hpp"

namespace {

using namespace roam;

const char* usage = R"(Usage: resume_probe [OPTIONS] --server ADDR --next ADDR --get NAME

Downloads NAME from the files service at --server, keeps the checkpoints it is pushed,
then presents chosen RESUMEs and logs every RESUMED answer.

Options:
  --server ADDR        the server holding the download (its userspace address)
  --next ADDR          the other server (the one a client would resume at)
  --get NAME           the file to download (files service)
  --files-port PORT    the files service's port (default 7000)
  --other-key FILE     key X, a second client (default: a fresh key)
  --checkpoints N      distinct generations to keep before the steps (default 3)
  --resume STEP        repeatable, run in order: WHO@WHERE:INDEX[:wrong-id]
                       WHO x|y (key X or key Y, the downloader), WHERE server|next,
                       INDEX 1..N (the kept checkpoints, oldest first), wrong-id: the
                       RESUME names another connection id than the checkpoint's
  --answer-ms MS       how long to wait for each answer (default 10000)
  --read-on-signal     after the steps, read the download only on SIGUSR1 (the caller
                       looks at the servers while nothing changes)
  -h, --help           show this help
)";

struct Step {
  bool other_key = false;  // x
  bool next = false;       // at --next
  size_t index = 0;        // 1-based
  bool wrong_id = false;
};

struct ProbeOptions {
  LinkOptions link;
  ChannelOptions channel;
  std::string other_key;
  IpAddress server;
  IpAddress next;
  std::string name;
  uint16_t files_port = 7000;
  size_t checkpoints = 3;
  std::vector<Step> steps;
  uint64_t answer_ms = 10000;
  bool read_on_signal = false;
};

Step parse_step(const std::string& text) {
  auto bad = [&] { return ConfigError("bad --resume '" + text + "': WHO@WHERE:INDEX[:wrong-id]"); };
  const size_t at = text.find('@');
  const size_t colon = text.find(':', at == std::string::npos ? 0 : at);
  if (at == std::string::npos || colon == std::string::npos) throw bad();
  Step step;
  const std::string who = text.substr(0, at);
  const std::string where = text.substr(at + 1, colon - at - 1);
  std::string rest = text.substr(colon + 1);
  if (who != "x" && who != "y") throw bad();
  if (where != "server" && where != "next") throw bad();
  step.other_key = who == "x";
  step.next = where == "next";
  if (const size_t tail = rest.find(':'); tail != std::string::npos) {
    if (rest.substr(tail + 1) != "wrong-id") throw bad();
    step.wrong_id = true;
    rest.resize(tail);
  }
  step.index = parse_number(rest, 64, "--resume index");
  if (step.index == 0) throw bad();
  return step;
}

ProbeOptions parse_arguments(int argc, char** argv) {
  ProbeOptions options;
  bool have_server = false;
  bool have_next = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      std::printf("%s\n%s\n%s", usage, channel_options_help(true).c_str(), link_options_help().c_str());
      std::exit(0);
    }
    if (parse_link_option(argc, argv, i, options.link)) continue;
    if (parse_channel_option(argc, argv, i, options.channel, true)) continue;
    if (arg == "--server") {
      options.server = parse_host(option_value(argc, argv, i), "--server");
      have_server = true;
    } else if (arg == "--next") {
      options.next = parse_host(option_value(argc, argv, i), "--next");
      have_next = true;
    } else if (arg == "--get") {
      options.name = option_value(argc, argv, i);
    } else if (arg == "--files-port") {
      options.files_port = static_cast<uint16_t>(parse_number(option_value(argc, argv, i), 65535, "--files-port"));
    } else if (arg == "--other-key") {
      options.other_key = option_value(argc, argv, i);
    } else if (arg == "--checkpoints") {
      options.checkpoints = parse_number(option_value(argc, argv, i), 64, "--checkpoints");
    } else if (arg == "--resume") {
      options.steps.push_back(parse_step(option_value(argc, argv, i)));
    } else if (arg == "--read-on-signal") {
      options.read_on_signal = true;
    } else if (arg == "--answer-ms") {
      options.answer_ms = parse_number(option_value(argc, argv, i), 600000, "--answer-ms");
    } else {
      throw ConfigError("unknown argument '" + arg + "' (see --help)");
    }
  }
  if (!have_server || !have_next || options.name.empty())
    throw ConfigError("--server, --next and --get are required (see --help)");
  if (options.checkpoints == 0) throw ConfigError("--checkpoints must be 1-64");
  for (const Step& step : options.steps)
    if (step.index > options.checkpoints) throw ConfigError("a --resume index is above --checkpoints");
  return options;
}

class Probe final : public TcpConnection::Handler {
 public:
  Probe(Node& node, const ProbeOptions& options) : node_(node), options_(options) {
    key_y_ = load_identity(options_.channel);
    ChannelOptions other = options_.channel;
    other.key_file = options_.other_key;
    key_x_ = load_identity(other);
    // channels_[who * 2 + where]: y@server, y@next, x@server, x@next.
    open_channel(*key_y_, options_.server);
    open_channel(*key_y_, options_.next);
    open_channel(*key_x_, options_.server);
    open_channel(*key_x_, options_.next);
    uv_timer_init(node_.loop(), timer_.get());
    timer_.mark_initialized();
    timer_.get()->data = this;
    crypto_hash_sha256_init(&digest_);
    if (options_.read_on_signal) {
      uv_signal_init(node_.loop(), signal_.get());
      signal_.mark_initialized();
      signal_.get()->data = this;
      uv_signal_start(
          signal_.get(),
          [](uv_signal_t* handle, int) noexcept {
            auto* self = static_cast<Probe*>(handle->data);
            self->signalled_ = true;
            if (self->steps_done_) self->start_reading();
          },
          SIGUSR1);
      uv_unref(signal_.base());
    }
    node_.kick();
  }

  void shutdown() {
    if (timer_.valid()) timer_.close();
    if (signal_.valid()) signal_.close();
    download_.reset();
    for (auto& channel : channels_) {
      if (!channel) continue;
      channel->close("probe done");
      node_.defer([owned = std::shared_ptr<ChannelConnection>(std::move(channel))] {});
    }
  }

 private:
  void open_channel(const crypto::IdentityKey& key, const IpAddress& server) {
    auto channel =
        std::make_unique<control::ControlChannel>(crypto::NoisePattern::xx, crypto::NoiseRole::initiator, key,
                                                  control::Hello{control::protocol_version, "probe", 0, {}});
    ChannelConnection::Callbacks callbacks;
    const size_t slot = channels_.size();
    callbacks.on_established = [this](ChannelConnection&) { on_established(); };
    callbacks.on_message = [this, slot](ChannelConnection&, const control::Message& m) { on_message(slot, m); };
    callbacks.on_closed = [slot](ChannelConnection&, const std::string& why) {
      logger("app")->info("[probe] channel {} closed: {}", slot, why);
    };
    auto connection = std::make_unique<ChannelConnection>(node_, std::move(channel), std::move(callbacks));
    auto tcp = TcpConnection::connect(server, options_.channel.port, connection.get());
    if (!tcp) throw ConfigError("cannot open a channel: " + tcp.error());
    connection->attach(std::move(tcp.value()), false);
    channels_.push_back(std::move(connection));
  }

  void on_established() {
    if (++established_ != channels_.size()) return;
    logger("app")->info("[probe] established");
    auto tcp = TcpConnection::connect(options_.server, options_.files_port, this);
    if (!tcp) throw ConfigError("cannot open the download: " + tcp.error());
    download_ = std::move(tcp.value());
  }

  // The download.
  void on_connected(TcpConnection& c) override {
    id_ = connection_id(c.pcb());
    const std::string request = options_.name + "\n";
    c.write({reinterpret_cast<const uint8_t*>(request.data()), request.size()});
    c.flush();
    // Y owns it: its checkpoints come on y@server.
    channels_[0]->send(control::RegisterConnections{{id_}});
    logger("app")->info("[probe] download {} open", id_);
  }
  void on_data(TcpConnection& c, PbufPtr data) override {
    if (!reading_) {
      // Copied, not consumed: the window stays shut, and lwIP's pbuf pool (which the
      // channels need too) is not held.
      for (const pbuf* q = data.get(); q != nullptr; q = q->next) {
        const auto* bytes = static_cast<const uint8_t*>(q->payload);
        held_.insert(held_.end(), bytes, bytes + q->len);
      }
      return;
    }
    take(c, *data);
  }
  void on_remote_closed(TcpConnection&) override {
    std::array<uint8_t, crypto_hash_sha256_BYTES> sum{};
    crypto_hash_sha256_final(&digest_, sum.data());
    std::string hex(sum.size() * 2 + 1, '\0');
    sodium_bin2hex(hex.data(), hex.size(), sum.data(), sum.size());
    hex.pop_back();
    logger("app")->info("[probe] download eof {} {}", received_, hex);
    finish();
  }
  void on_sent(TcpConnection&, size_t) override {}
  void on_error(TcpConnection& c, err_t) override {
    logger("app")->info("[probe] download lost: {}", c.loss_text());
    finish();
  }

  void take(TcpConnection& c, const pbuf& chain) {
    for (const pbuf* q = &chain; q != nullptr; q = q->next)
      crypto_hash_sha256_update(&digest_, static_cast<const uint8_t*>(q->payload), q->len);
    received_ += chain.tot_len;
    c.consumed(chain.tot_len);
  }
  void take_held(TcpConnection& c) {
    crypto_hash_sha256_update(&digest_, held_.data(), held_.size());
    received_ += held_.size();
    c.consumed(held_.size());
    held_.clear();
  }

  void on_message(size_t slot, const control::Message& message) {
    if (const auto* push = std::get_if<control::CheckpointPush>(&message)) {
      if (slot != 0 || kept_.size() >= options_.checkpoints || !download_ || !download_->alive()) return;
      auto header = migrate::peek_checkpoint_header(push->sealed);
      if (!header || header->connection_id != id_) return;
      if (!kept_.empty() && header->generation <= kept_.back().generation) return;
      const tcp_pcb* pcb = download_->pcb();
      kept_.push_back({header->generation, push->sealed, pcb->rcv_nxt, pcb->lastack, pcb->snd_nxt});
      logger("app")->info("[probe] checkpoint {} {}", id_, header->generation);
      if (kept_.size() == options_.checkpoints) next_step();
    } else if (const auto* answer = std::get_if<control::ResumeAnswer>(&message)) {
      if (!waiting_) return;
      waiting_ = false;
      uv_timer_stop(timer_.get());
      logger("app")->info("[probe] step {} resumed {} {} {} {}", step_, answer->connection_id, answer->generation,
                          static_cast<int>(answer->status), static_cast<int>(answer->reason));
      next_step();
    } else if (const auto* error = std::get_if<control::ErrorMessage>(&message)) {
      logger("app")->info("[probe] channel {} error {}: {}", slot, error->code, error->text);
    }
  }

  void next_step() {
    if (step_ == options_.steps.size()) {
      logger("app")->info("[probe] steps done");
      steps_done_ = true;
      if (!options_.read_on_signal || signalled_) start_reading();
      return;
    }
    const Step& step = options_.steps[step_++];
    const Kept& kept = kept_[step.index - 1];
    control::ResumeRequest request;
    // Another connection's id (never 0): the checkpoint names ours.
    request.connection_id = step.wrong_id ? (id_ ^ 0x1000) : id_;
    request.rcv_nxt = kept.rcv_nxt;
    request.snd_una = kept.snd_una;
    request.snd_nxt = kept.snd_nxt;
    request.sealed = kept.sealed;
    ChannelConnection& channel = *channels_[(step.other_key ? 2 : 0) + (step.next ? 1 : 0)];
    waiting_ = true;
    if (!channel.send(request)) {
      waiting_ = false;
      logger("app")->info("[probe] step {} not sent (channel down)", step_);
      return next_step();
    }
    uv_timer_start(
        timer_.get(),
        [](uv_timer_t* timer) noexcept {
          auto* self = static_cast<Probe*>(timer->data);
          self->waiting_ = false;
          logger("app")->info("[probe] step {} no answer", self->step_);
          self->next_step();
        },
        options_.answer_ms, 0);
  }

  void start_reading() {
    if (reading_) return;
    reading_ = true;
    if (!download_ || !download_->alive()) return;
    take_held(*download_);
  }

  void finish() {
    if (finished_) return;
    finished_ = true;
    uv_kill(uv_os_getpid(), SIGTERM);  // the app's orderly exit
  }

  struct Kept {
    uint64_t generation;
    std::vector<uint8_t> sealed;
    uint32_t rcv_nxt;
    uint32_t snd_una;
    uint32_t snd_nxt;
  };

  Node& node_;
  ProbeOptions options_;
  std::unique_ptr<crypto::IdentityKey> key_y_;
  std::unique_ptr<crypto::IdentityKey> key_x_;
  std::vector<std::unique_ptr<ChannelConnection>> channels_;
  size_t established_ = 0;
  std::unique_ptr<TcpConnection> download_;
  uint64_t id_ = 0;
  std::vector<uint8_t> held_;  // received before the steps ended, not yet consumed
  bool reading_ = false;
  bool finished_ = false;
  uint64_t received_ = 0;
  crypto_hash_sha256_state digest_{};
  std::vector<Kept> kept_;
  size_t step_ = 0;
  bool waiting_ = false;
  UvHandle<uv_timer_t> timer_;
  UvHandle<uv_signal_t> signal_;
  bool steps_done_ = false;
  bool signalled_ = false;
};

}  // namespace

int main(int argc, char** argv) {
  return roam::run_node_app("resume_probe", argc, argv, parse_arguments, [](roam::Node& node, ProbeOptions& options) {
    return std::make_unique<Probe>(node, options);
  });
}

#include "stack/tcp_listener.hpp"

#include <map>

#include "stack/connection_id.hpp"
#include "stack/pcb_owner.hpp"
#include "stack/tcp_connection.hpp"
#include "base/log.hpp"

namespace roam {

namespace {
std::map<uint16_t, TcpListener*>& registry() {
  static std::map<uint16_t, TcpListener*> listeners;
  return listeners;
}
ListenerWatcher* the_watcher = nullptr;

}  // namespace

TcpListener::TcpListener(tcp_pcb* pcb, uint16_t port, AcceptFn on_accept)
    : pcb_(pcb), port_(port), on_accept_(std::move(on_accept)) {
  tcp_arg(pcb_, this);
  tcp_accept(pcb_, &TcpListener::on_accept_trampoline);
  registry()[port_] = this;
  if (the_watcher != nullptr) the_watcher->listening(*this);
}

TcpListener::~TcpListener() {
  close();
}

Result<std::unique_ptr<TcpListener>, std::string> TcpListener::listen(uint16_t port, AcceptFn on_accept) {
  tcp_pcb* pcb = tcp_new_ip_type(IPADDR_TYPE_ANY);
  if (pcb == nullptr) return unexpected(std::string("out of memory for a pcb"));
  err_t rc = tcp_bind(pcb, IP_ANY_TYPE, port);
  if (rc != ERR_OK) {
    tcp_abort(pcb);
    return unexpected("cannot bind port " + std::to_string(port) + ": " + lwip_error_name(rc));
  }
  tcp_pcb* listening = tcp_listen_with_backlog_and_err(pcb, TCP_DEFAULT_LISTEN_BACKLOG, &rc);
  if (listening == nullptr) {
    tcp_abort(pcb);
    return unexpected(std::string("cannot listen: ") + lwip_error_name(rc));
  }
  return std::unique_ptr<TcpListener>(new TcpListener(listening, port, std::move(on_accept)));
}

void TcpListener::close() {
  if (pcb_ == nullptr) return;
  if (the_watcher != nullptr) the_watcher->closing(*this);
  auto it = registry().find(port_);
  if (it != registry().end() && it->second == this) registry().erase(it);
  tcp_arg(pcb_, nullptr);
  tcp_accept(pcb_, nullptr);
  tcp_close(pcb_);  // a listening pcb always closes
  pcb_ = nullptr;
}

TcpListener* TcpListener::find(uint16_t port) {
  auto it = registry().find(port);
  return it == registry().end() ? nullptr : it->second;
}

std::vector<TcpListener*> TcpListener::all() {
  std::vector<TcpListener*> out;
  for (auto& [port, listener] : registry()) out.push_back(listener);
  return out;
}

void TcpListener::set_watcher(ListenerWatcher* watcher) {
  the_watcher = watcher;
  if (watcher != nullptr)
    for (TcpListener* listener : all()) watcher->listening(*listener);
}

bool TcpListener::accept_established(tcp_pcb* pcb) {
  return accept(pcb) == ERR_OK;
}

err_t TcpListener::on_accept_trampoline(void* arg, tcp_pcb* pcb, err_t err) noexcept {
  auto* self = static_cast<TcpListener*>(arg);
  if (self == nullptr || err != ERR_OK || pcb == nullptr) return ERR_VAL;
  return self->accept(pcb);
}

err_t TcpListener::accept(tcp_pcb* pcb) noexcept {
  // A connection made from a SYN cookie arrives named already (its lastack is past the ISN).
  if (connection_id(pcb) == 0) assign_connection_id_at_accept(pcb);
  adopt_syn_owner(pcb);  // the owner its SYN proved, if any (stack/pcb_owner.hpp)
  book_syn_window(pcb);
  if (the_watcher != nullptr && !the_watcher->admit(*this, pcb)) {
    tcp_abort(pcb);
    return ERR_ABRT;
  }
  try {
    if (!on_accept_(pcb)) return ERR_ABRT;
  } catch (const std::exception& e) {
    logger("tcp")->error("accept handler threw: {}", e.what());
    tcp_abort(pcb);
    return ERR_ABRT;
  }
  return ERR_OK;
}

}  // namespace roam

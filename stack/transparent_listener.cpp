#include "stack/transparent_listener.hpp"

#include "base/log.hpp"
#include "stack/lwip_address.hpp"
#include "stack/tcp_connection.hpp"

namespace roam {

namespace {
TransparentListener* the_listener = nullptr;
}  // namespace

Result<std::unique_ptr<TransparentListener>, std::string> TransparentListener::listen(netif* interface,
                                                                                      AcceptsFn accepts,
                                                                                      AcceptFn on_accept) {
  if (the_listener != nullptr) return unexpected(std::string("a transparent listener exists already"));
  if (interface == nullptr) return unexpected(std::string("no interface"));
  tcp_pcb* pcb = tcp_new_ip_type(IPADDR_TYPE_ANY);
  if (pcb == nullptr) return unexpected(std::string("out of memory for a pcb"));
  // Port 0: lwIP picks a free one, a placeholder (a SYN to it is caught like any other,
  // and re-checked at accept).
  err_t rc = tcp_bind(pcb, IP_ANY_TYPE, 0);
  if (rc != ERR_OK) {
    tcp_abort(pcb);
    return unexpected(std::string("cannot bind: ") + lwip_error_name(rc));
  }
  tcp_bind_netif(pcb, interface);
  tcp_pcb* listening = tcp_listen_with_backlog_and_err(pcb, TCP_DEFAULT_LISTEN_BACKLOG, &rc);
  if (listening == nullptr) {
    tcp_abort(pcb);
    return unexpected(std::string("cannot listen: ") + lwip_error_name(rc));
  }
  auto listener = std::unique_ptr<TransparentListener>(
      new TransparentListener(listening, std::move(accepts), std::move(on_accept)));
  roam_lwip_set_transparent(interface, &TransparentListener::catches);
  return listener;
}

TransparentListener::TransparentListener(tcp_pcb* pcb, AcceptsFn accepts, AcceptFn on_accept)
    : pcb_(pcb), accepts_(std::move(accepts)), on_accept_(std::move(on_accept)) {
  the_listener = this;
  tcp_arg(pcb_, this);
  tcp_accept(pcb_, &TransparentListener::on_accept_trampoline);
}

TransparentListener::~TransparentListener() {
  close();
}

void TransparentListener::close() {
  if (pcb_ == nullptr) return;
  roam_lwip_set_transparent(nullptr, nullptr);
  the_listener = nullptr;
  tcp_arg(pcb_, nullptr);
  tcp_accept(pcb_, nullptr);
  tcp_close(pcb_);  // a listening pcb always closes
  pcb_ = nullptr;
}

int TransparentListener::catches(const tcp_pcb_listen* lpcb, const void* destination, u16_t port) noexcept {
  TransparentListener* self = the_listener;
  if (self == nullptr || self->pcb_ == nullptr || lpcb != reinterpret_cast<const tcp_pcb_listen*>(self->pcb_)) return 0;
  try {
    return self->accepts_(from_lwip(*static_cast<const ip_addr_t*>(destination)), port) ? 1 : 0;
  } catch (...) {
    return 0;
  }
}

err_t TransparentListener::on_accept_trampoline(void* arg, tcp_pcb* pcb, err_t err) noexcept {
  auto* self = static_cast<TransparentListener*>(arg);
  if (self == nullptr || err != ERR_OK || pcb == nullptr) return ERR_VAL;
  return self->accept(pcb);
}

err_t TransparentListener::accept(tcp_pcb* pcb) noexcept {
  try {
    if (!accepts_(from_lwip(pcb->local_ip), pcb->local_port)) {
      ++counters_.refused_late;
      tcp_abort(pcb);
      return ERR_ABRT;
    }
    ++counters_.accepted;
    book_syn_window(pcb);  // stack/tcp_connection.hpp
    if (!on_accept_(pcb)) return ERR_ABRT;
  } catch (const std::exception& e) {
    logger("tcp")->error("transparent accept handler threw: {}", e.what());
    tcp_abort(pcb);
    return ERR_ABRT;
  }
  return ERR_OK;
}

}  // namespace roam

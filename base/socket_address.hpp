// Socket addresses as text: "IP:PORT" or "[IPv6]:PORT", for options, logs and the
// control port. Pure; any thread.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <string>

namespace roam {

// Parses "IP:PORT" or "[IPv6]:PORT" into a socket address.
bool parse_socket_address(const std::string& text, sockaddr_storage& out, socklen_t& out_len);
std::string format_socket_address(const sockaddr_storage& addr);

}  // namespace roam

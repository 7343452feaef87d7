// DeviceAddressWatcher: follows the addresses the kernel gives one network device (a TUN
// device) over rtnetlink (RTM_NEWADDR / RTM_DELADDR on a NETLINK_ROUTE socket, polled by
// libuv) and reports when the node address it names changes: roam-client
// --addr-from-device moves by itself when its device is readdressed, as seed 003's
// redirect daemon (section 4) watches interface addresses. The node address is the peer
// end of a point-to-point address (tun/netlink_address.hpp): the newest such address of
// each family on the device. When the device has none left, the node keeps the address
// it has (a roaming host is briefly without one); nothing is reported until a new one
// appears. A netlink overflow (ENOBUFS) is repaired by a fresh dump. Owned by the app;
// loop thread only.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "base/ip_address.hpp"
#include "base/result.hpp"
#include "base/uv_handle.hpp"
#include "tun/netlink_address.hpp"

namespace roam {

struct DeviceAddressCounters {
  uint64_t messages = 0;   // address entries about our device
  uint64_t malformed = 0;  // netlink messages that did not parse (skipped)
  uint64_t resyncs = 0;    // dumps after the socket overflowed
  uint64_t changes = 0;    // node addresses reported
};

class DeviceAddressWatcher {
 public:
  // The node address of that family the device names now (it differs from the last one).
  using ChangeFn = std::function<void(const IpAddress& address)>;

  DeviceAddressWatcher(uv_loop_t* loop, std::string device, ChangeFn on_change);
  ~DeviceAddressWatcher();
  DeviceAddressWatcher(const DeviceAddressWatcher&) = delete;
  DeviceAddressWatcher& operator=(const DeviceAddressWatcher&) = delete;

  // Subscribes and asks for the current addresses (their answer arrives on the loop; the
  // addresses known at start are reported only where they differ from `initial`).
  Result<Ok, std::string> start(std::optional<IpAddress> initial4, std::optional<IpAddress> initial6);
  void close();
  const DeviceAddressCounters& counters() const { return counters_; }

  // What the device names now, read once and blocking (start-up: before the node exists).
  // nullopt when it names none of that family; an error when the device or netlink fails.
  static Result<std::optional<IpAddress>, std::string> read_node_address(const std::string& device, uint8_t version);

  // The rule, pure: the newest entry with a peer of that family, after applying `batch`
  // (additions appended, removals dropped) to `entries`.
  static void apply(std::vector<NetlinkAddress>& entries, const std::vector<NetlinkAddress>& batch,
                    uint32_t interface);
  static std::optional<IpAddress> node_address(const std::vector<NetlinkAddress>& entries, uint8_t version);

 private:
  static void on_readable(uv_poll_t* handle, int status, int events) noexcept;
  void read_all();
  void request_dump();
  void report(uint8_t version);

  uv_loop_t* loop_;
  std::string device_;
  ChangeFn on_change_;
  uint32_t interface_ = 0;
  int fd_ = -1;
  uint32_t sequence_ = 1;
  UvHandle<uv_poll_t> poll_;
  std::vector<NetlinkAddress> entries_;  // the device's addresses, oldest first
  std::optional<IpAddress> reported4_;
  std::optional<IpAddress> reported6_;
  std::vector<uint8_t> buffer_;
  DeviceAddressCounters counters_;
};

}  // namespace roam

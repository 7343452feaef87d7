// LocalPortAllocator: chooses the local port of each active open so that its 4-tuple is
// unique per destination (remote address and port), as the kernel does, instead of lwIP's
// one range shared by every destination (tcp_new_port: 16384 connections in all, and a
// walk of every pcb list per candidate port: a full range stalled the loop ~10 s per
// failed connect). Pure bookkeeping, O(1) amortized per call; TcpConnection::connect
// holds one per process and releases a port when lwIP frees the pcb (after TIME_WAIT).
// Loop thread only.
//
// Policy: a port no connection uses yet is preferred (while fewer connections are open
// than the range holds, every port is unique, whatever the destinations: a server move
// that rewrites connections to two old servers onto one new address cannot then produce
// two equal 4-tuples); once every port is in use, a port is shared between destinations,
// never within one. A destination with every port in use gets none: its connect fails at
// once, the others go on.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "base/ip_address.hpp"

namespace roam {

class LocalPortAllocator {
 public:
  // The kernel's default ephemeral range starts at 32768 too; listeners sit below it.
  static constexpr uint16_t default_first = 32768;
  static constexpr uint16_t default_last = 65535;

  // Who holds a port: `destination` is a handle valid while the lease lives.
  struct Lease {
    uint32_t destination = 0;
    uint16_t port = 0;
  };

  // Ports first..last (first > 0); `start` picks where the search begins (randomize it).
  LocalPortAllocator(uint16_t first, uint16_t last, uint32_t start)
      : first_(first),
        size_(static_cast<uint32_t>(last - first) + 1),
        users_(size_, 0),
        free_ports_(size_),
        cursor_(start % size_) {}

  // A port unique toward address:port, or nullopt when all of the range are in use there.
  std::optional<Lease> acquire(const IpAddress& address, uint16_t port) {
    uint32_t handle = handle_for({address, port});
    Destination& d = destinations_[handle];
    if (d.count == size_) return std::nullopt;  // d has leases: its handle stays
    uint32_t index;
    if (free_ports_ > 0) {
      while (users_[cursor_] != 0) cursor_ = (cursor_ + 1) % size_;
      index = cursor_;
      cursor_ = (cursor_ + 1) % size_;
    } else {
      // Every port has a user: take one this destination does not use (count < size_
      // guarantees one; the cursor keeps the walk short while the destination fills).
      while (taken_.count(key(handle, d.cursor)) != 0) d.cursor = (d.cursor + 1) % size_;
      index = d.cursor;
      d.cursor = (d.cursor + 1) % size_;
    }
    if (users_[index]++ == 0) --free_ports_;
    taken_.insert(key(handle, index));
    ++d.count;
    ++leases_;
    return Lease{handle, static_cast<uint16_t>(first_ + index)};
  }

  // Gives a lease back (ignores one that is not live).
  void release(Lease lease) {
    if (lease.destination >= destinations_.size() || lease.port < first_) return;
    uint32_t index = uint32_t{lease.port} - first_;
    if (index >= size_) return;
    if (taken_.erase(key(lease.destination, index)) == 0) return;
    if (--users_[index] == 0) ++free_ports_;
    --leases_;
    if (--destinations_[lease.destination].count == 0) forget(lease.destination);
  }

  size_t range_size() const { return size_; }
  size_t leases() const { return leases_; }
  size_t destinations() const { return handles_.size(); }

 private:
  struct DestinationKey {
    IpAddress address;
    uint16_t port = 0;
    bool operator==(const DestinationKey& other) const { return port == other.port && address == other.address; }
  };
  struct DestinationKeyHash {
    size_t operator()(const DestinationKey& k) const noexcept {
      uint64_t h = 1469598103934665603ull ^ (uint64_t{k.address.version} << 16 | k.port);
      for (uint8_t b : k.address.span()) h = (h ^ b) * 1099511628211ull;  // FNV-1a
      return static_cast<size_t>(h);
    }
  };
  struct Destination {
    DestinationKey key;
    uint32_t count = 0;   // live leases toward it
    uint32_t cursor = 0;  // where its search for a shared port goes on
  };

  static uint64_t key(uint32_t handle, uint32_t index) { return uint64_t{handle} << 16 | index; }

  uint32_t handle_for(const DestinationKey& k) {
    auto it = handles_.find(k);
    if (it != handles_.end()) return it->second;
    uint32_t handle;
    if (!free_handles_.empty()) {
      handle = free_handles_.back();
      free_handles_.pop_back();
    } else {
      handle = static_cast<uint32_t>(destinations_.size());
      destinations_.emplace_back();
    }
    // Each destination's shared-port search starts elsewhere, as Linux hashes it.
    destinations_[handle] = Destination{k, 0, static_cast<uint32_t>(DestinationKeyHash{}(k) % size_)};
    handles_.emplace(k, handle);
    return handle;
  }

  void forget(uint32_t handle) {
    handles_.erase(destinations_[handle].key);
    free_handles_.push_back(handle);
  }

  uint16_t first_;
  uint32_t size_;
  std::vector<uint32_t> users_;  // live leases per port (index = port - first_)
  uint32_t free_ports_;          // ports with no lease at all
  uint32_t cursor_;              // where the search for an unused port goes on
  size_t leases_ = 0;
  std::unordered_map<DestinationKey, uint32_t, DestinationKeyHash> handles_;
  std::vector<Destination> destinations_;  // by handle
  std::vector<uint32_t> free_handles_;
  std::unordered_set<uint64_t> taken_;  // handle << 16 | index of every live lease
};

}  // namespace roam

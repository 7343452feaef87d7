#include "stack/migrate/control_access.hpp"

namespace roam::migrate {

const char* control_access_text(ControlAccess access) {
  switch (access) {
    case ControlAccess::allowed:
      return "allowed";
    case ControlAccess::needs_operator:
      return "not authorized: this needs an operator key listed in the server's --operators";
    case ControlAccess::needs_member:
      return "not authorized: session transfers and ratifications are taken only from members of this server's pool";
    case ControlAccess::not_a_request:
      return "unexpected frame";
  }
  return "not authorized";
}

ControlAccess control_access(FrameType type, const ControlPeer& peer, bool status_open) {
  switch (type) {
    case FrameType::migrate_request:
    case FrameType::inform_request:
      return peer.operator_key ? ControlAccess::allowed : ControlAccess::needs_operator;
    case FrameType::status_request:
      return peer.operator_key || status_open ? ControlAccess::allowed : ControlAccess::needs_operator;
    case FrameType::session:
    case FrameType::address_request:
    case FrameType::ratify:
    case FrameType::precopy:
    case FrameType::precopy_sync:
      return peer.pool_member ? ControlAccess::allowed : ControlAccess::needs_member;
    case FrameType::session_result:
    case FrameType::reply:
      return ControlAccess::not_a_request;
  }
  return ControlAccess::not_a_request;
}

}  // namespace roam::migrate

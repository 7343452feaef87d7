#include "stack/migrate/stay_reason.hpp"

#include <string>

#include "stack/flow_key.hpp"
#include "stack/migrate/pcb_migration.hpp"

namespace roam::migrate {

std::optional<StayReason> why_session_stays(const MovableSession& session, const std::vector<SessionLeg>& legs,
                                            const MigrationGuard& guard) {
  if (!session.movable()) return session.stay_reason();
  if (legs.empty() || legs.size() > max_session_legs)
    return StayReason{
        "legs", "it has " + std::to_string(legs.size()) + " legs (1 to " + std::to_string(max_session_legs) + " move)"};
  for (size_t i = 0; i < legs.size(); ++i) {
    for (size_t j = 0; j < i; ++j)
      if (legs[j].pcb == legs[i].pcb && legs[i].pcb != nullptr)
        return StayReason{"legs", "two of its legs are one connection"};
    std::string leg = legs.size() > 1 ? std::string(leg_role_name(legs[i].role)) + " leg: " : std::string();
    if (auto movable = check_movable(legs[i].pcb); !movable) return StayReason{"not open", leg + movable.error()};
    // It arrived here and its peer has not followed yet: it cannot move on.
    if (guard.is_parked(flow_of(legs[i].pcb)))
      return StayReason{"parked", leg + "it arrived here and its peer has not followed yet"};
  }
  return std::nullopt;
}

StayReason no_channel_reason() {
  return {"no channel", "its client has no control channel here"};
}

}  // namespace roam::migrate

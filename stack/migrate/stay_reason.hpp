// Whether a session can move now and, if not, why: one answer for the exporter (which
// leaves such a session untouched and says why in its summary and log) and for `roamctl
// status` (which lists it). Loop thread only.
#pragma once

#include <optional>
#include <vector>

#include "stack/migrate/migration_guard.hpp"
#include "stack/migrate/movable_session.hpp"

namespace roam::migrate {

// nullopt when the session and every leg can move now; else the first reason found: the
// session refuses (ending, or a kind that never moves), a leg count the frame cannot carry,
// a leg that is not an open connection, or a leg that arrived here and is still parked.
std::optional<StayReason> why_session_stays(const MovableSession& session, const std::vector<SessionLeg>& legs,
                                            const MigrationGuard& guard);

// The reason given to a session whose client has no control channel here to be told by.
StayReason no_channel_reason();

}  // namespace roam::migrate

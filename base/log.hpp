// Per-component loggers (link, node, tcp, app, ...), all writing to stderr at one level
// set by --log-level. Lives in the lowest I/O layer so every layer above can log.
// Rule: nothing is logged per packet above debug.
#pragma once

#include <spdlog/spdlog.h>

#include <memory>
#include <string>

namespace roam {

// Returns the logger for `component`, creating it on first use.
std::shared_ptr<spdlog::logger> logger(const std::string& component);

// Sets the level of every component logger ("trace", "debug", "info", "warn", "error",
// "critical", "off"). Returns false for an unknown level name.
bool set_log_level(const std::string& level);

}  // namespace roam

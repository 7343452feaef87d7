# Small patches of Roamstack's own to lwIP 2.1.3, applied at configure time to copies of
# the affected files under ${CMAKE_BINARY_DIR}/lwip-patched (the source tree is never
# touched, nothing of lwIP is committed). Each replacement must match exactly once, or
# configuration stops: a different lwIP release needs the patch reviewed, not guessed.
#
# Patch "unacked tail" (justified by tools/bench/run throughput, see tools/bench/README.md):
# tcp_output walked the whole unacked list to find its tail on every call, that is on
# every ACK received. With a 4 MiB window at MSS 1460 that list holds ~2900 segments, and
# the walk was 17 % of the sending process's CPU. The pcb now keeps the tail; the only
# code that appends to unacked is tcp_output itself, every other change removes segments
# from the head or empties the list, so the tail stays right whenever unacked != NULL.

function(roam_lwip_patch_file relative_path out_var)
  set(source "${LWIP_SOURCE_DIR}/${relative_path}")
  set(target "${CMAKE_BINARY_DIR}/lwip-patched/${relative_path}")
  file(READ "${source}" text)
  string(REPLACE "\r\n" "\n" text "${text}")
  math(EXPR last "${ARGC} - 1")
  foreach(i RANGE 2 ${last} 2)
    math(EXPR j "${i} + 1")
    set(from "${ARGV${i}}")
    set(to "${ARGV${j}}")
    string(FIND "${text}" "${from}" first)
    string(FIND "${text}" "${from}" final REVERSE)
    if(first EQUAL -1 OR NOT first EQUAL final)
      message(FATAL_ERROR "lwIP patch: anchor not found exactly once in ${source}:\n${from}")
    endif()
    string(REPLACE "${from}" "${to}" text "${text}")
  endforeach()
  set(previous "")
  if(EXISTS "${target}")
    file(READ "${target}" previous)
  endif()
  if(NOT previous STREQUAL text)  # rewrite only on change: no needless rebuild of lwIP
    file(WRITE "${target}" "${text}")
  endif()
  set(${out_var} "${target}" PARENT_SCOPE)
endfunction()

roam_lwip_patch_file(src/include/lwip/tcp.h LWIP_PATCHED_TCP_H
  "  struct tcp_seg *unacked;  /* Sent but unacknowledged segments. */\n"
  "  struct tcp_seg *unacked;  /* Sent but unacknowledged segments. */\n  struct tcp_seg *unacked_tail; /* roamstack: last of unacked, valid while unacked != NULL */\n")

roam_lwip_patch_file(src/core/tcp_out.c LWIP_PATCHED_TCP_OUT_C
  "  useg = pcb->unacked;\n  if (useg != NULL) {\n    for (; useg->next != NULL; useg = useg->next);"
  "  useg = pcb->unacked;\n  if (useg != NULL) {\n    if (pcb->unacked_tail != NULL) useg = pcb->unacked_tail;\n    for (; useg->next != NULL; useg = useg->next);"
  "        pcb->unacked = seg;\n        useg = seg;\n"
  "        pcb->unacked = seg;\n        useg = seg;\n        pcb->unacked_tail = seg;\n"
  "          useg->next = seg;\n          useg = useg->next;\n"
  "          useg->next = seg;\n          useg = useg->next;\n          pcb->unacked_tail = seg;\n")

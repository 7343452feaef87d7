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
#
# Patch "TSO segments" (justified by tools/bench/run throughput, carrier_tun; DESIGN.md
# section 8 names TUN offloads as the lever once the tail walk was gone): on a netif whose
# link segments TCP itself (a TUN device with IFF_VNET_HDR and TSO, tun/tun_link.cpp), the
# sender was spending most of its CPU in one write() per 1460-byte packet. The pcb keeps
# its real MSS (min of the peer's MSS option and netif MTU - 40, also what our SYN
# advertises), and every use of it as a congestion unit is unchanged; only the size of
# the segments tcp_write builds grows to a multiple of the MSS up to the link's limit
# (roam_lwip_tcp_segment_size). Four edits:
#  - tcp_write: segment size from the hook instead of pcb->mss;
#  - tcp_output: a multi-MSS segment that does not fit the window is cut to the whole MSS
#    multiples that fit (tcp_split_unsent_seg, whose "split <= mss" assertion is lifted),
#    otherwise a window smaller than one segment (cwnd starts at 3 MSS) would never send;
#    while data is in flight the cut waits until a third of the window is free, as Linux
#    defers TSO sends, or ACK-clocked sends shrink back to a few MSS each.
#    tcp_split_unsent_seg moves FIN and PSH to the remainder but only ORed the head's
#    flags, so a FIN stayed on the head too: the peer saw the stream end early (a bug
#    lwIP's own zero-window probes rarely hit); the head's FIN and PSH are now cleared;
#  - tcp_output_segment: publishes the pcb's MSS while the netif output runs
#    (roam_lwip_tcp_tx_mss), which becomes the virtio_net_hdr gso_size;
#  - tcp_receive: slow start grows cwnd by the bytes acked (as Linux does) instead of at
#    most 2 MSS per ACK (RFC 3465's L): a receiver of 64 KiB segments acks every 128 KiB,
#    and with L = 2 MSS slow start would crawl. After an RTO it stays 1 MSS.
#
# Patch "sequence check first" (found by tools/bench/run acm): tcp_process handed every
# segment of a synchronized connection to tcp_receive, which processed its ACK field and
# window before it looked at the sequence number. A blind attacker's segment with a random
# sequence number was answered with an ACK each (a flood of forgeries became a flood of
# ACKs), could install its window, and about inflight / 2^32 of them acknowledged data the
# peer never received (lost bytes). RFC 793's first check now comes first: a segment
# outside the receive window changes nothing, and its ACK is rate-limited (RFC 5961
# section 7) unless it looks like a retransmission of data we already have.
#
# Patch "persist split" (found by netns_tun_migrate, 1 run in 6 stalled for good after a
# move): when the window is open but too small for the unsent head, lwIP's persist timer
# splits the head at snd_wnd bytes, counted from the head's first byte and truncated to
# u16. After an import or an RTO the head may start before lastack (a TSO-sized segment the
# peer acknowledged in part); with more acknowledged than the window (a slow reader's
# window of 128 bytes, 37 KB acknowledged) the split made a head that was acknowledged
# entirely: it never fits the window (its offset from lastack wraps), no new ACK ever frees
# it, and the connection stalls until the dead-peer timeout aborts it. The split now counts
# the acknowledged part plus the window (stack/pcb_persist_test.cpp).
#
# Patch "active hook" (justified by tools/bench/run scale: 82 % of a 1000-connection move's
# CPU on the new server was the linear pcb walk of find_pcb_by_connection_id): lwIP tells
# roam_lwip_tcp_active_hook (NULL: nobody listens) every time a pcb joins or leaves
# tcp_active_pcbs, so stack/connection_id.cpp keeps an id -> pcb index of exactly the pcbs
# the old walk saw (not parked imports, not frozen exports, not TIME_WAIT). Joining and
# leaving happen in TCP_REG_ACTIVE / TCP_RMV_ACTIVE (tcp_priv.h), in tcp_pcb_remove (which
# TCP_PCB_REMOVE_ACTIVE and tcp_input use) and in tcp_slowtmr's own unlink; tcp_input's
# move-to-front relink changes no membership.
#
# Patch "transparent" (roam-client --transparent, tun2socks style): lwIP terminates kernel
# applications' TCP connections to any address and port that a TUN device routes to it.
# Two hooks, both answered by stack/transparent_listener.cpp and inert until it registers:
#  - ip4_input: a packet whose input netif is the transparent one is taken as addressed to
#    it whatever its destination (only the input netif: a packet from another link is
#    never delivered to the transparent netif);
#  - tcp_input: a listening pcb bound to that netif catches a SYN to any destination the
#    hook accepts (a destination it refuses matches no listener: lwIP answers RST), and
#    the new pcb takes the segment's destination port (the listener's port is a
#    placeholder; for every other listener the two are equal).

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
  "          useg->next = seg;\n          useg = useg->next;\n          pcb->unacked_tail = seg;\n"
  "  mss_local = LWIP_MIN(pcb->mss, TCPWND_MIN16(pcb->snd_wnd_max / 2));\n"
  "  mss_local = roam_lwip_tcp_segment_size(pcb, TCPWND_MIN16(pcb->snd_wnd_max / 2));\n"
  "err_t\ntcp_output(struct tcp_pcb *pcb)\n{"
  "/* roamstack TSO: send the whole MSS multiples of an oversized head segment that fit now.\n * The head may start before lastack (partly acknowledged, e.g. re-queued after an RTO or\n * an import): those bytes count for nothing in the window. While data is in flight, wait\n * until a third of the window is free (Linux's tcp_tso_should_defer, tso_win_divisor 3):\n * a peer acking every 2 MSS would otherwise turn every ACK into a 2-4 MSS segment. */\nstatic void\nroam_tcp_split_to_window(struct tcp_pcb *pcb, struct tcp_seg *seg, u32_t wnd)\n{\n  s32_t used = (s32_t)(lwip_ntohl(seg->tcphdr->seqno) - pcb->lastack);\n  s32_t acked = used < 0 ? -used : 0;\n  s32_t room = (s32_t)wnd - (used > 0 ? used : 0);\n  if (seg->len > pcb->mss && room >= (s32_t)pcb->mss && acked + room < (s32_t)seg->len &&\n      (pcb->unacked == NULL || room >= (s32_t)(wnd / 3))) {\n    tcp_split_unsent_seg(pcb, (u16_t)(acked + (room / pcb->mss) * pcb->mss));\n  }\n}\n\nerr_t\ntcp_output(struct tcp_pcb *pcb)\n{"
  "  /* Handle the current segment not fitting within the window */\n"
  "  roam_tcp_split_to_window(pcb, seg, wnd);\n  /* Handle the current segment not fitting within the window */\n"
  "  while (seg != NULL &&\n         lwip_ntohl(seg->tcphdr->seqno) - pcb->lastack + seg->len <= wnd) {"
  "  while (seg != NULL &&\n         (roam_tcp_split_to_window(pcb, seg, wnd), lwip_ntohl(seg->tcphdr->seqno) - pcb->lastack + seg->len <= wnd)) {"
  "  LWIP_ASSERT(\"split <= mss\", split <= pcb->mss);\n"
  "  /* roamstack TSO: splits of multi-MSS segments may exceed the MSS */\n"
  "  TCPH_SET_FLAG(useg->tcphdr, split_flags);\n"
  "  TCPH_UNSET_FLAG(useg->tcphdr, TCP_PSH | TCP_FIN); /* roamstack: they moved to the remainder */\n  TCPH_SET_FLAG(useg->tcphdr, split_flags);\n"
  "  err = ip_output_if(seg->p, &pcb->local_ip, &pcb->remote_ip, pcb->ttl,\n                     pcb->tos, IP_PROTO_TCP, netif);\n"
  "  roam_lwip_tcp_tx_mss = pcb->mss;\n  err = ip_output_if(seg->p, &pcb->local_ip, &pcb->remote_ip, pcb->ttl,\n                     pcb->tos, IP_PROTO_TCP, netif);\n  roam_lwip_tcp_tx_mss = 0;\n")

roam_lwip_patch_file(src/core/tcp_in.c LWIP_PATCHED_TCP_IN_C
  "      if (lpcb->local_port == tcphdr->dest) {\n"
  "      if (lpcb->local_port == tcphdr->dest ||\n          roam_lwip_tcp_listen_catches(lpcb, ip_current_dest_addr(), tcphdr->dest)) {\n"
  "    npcb->local_port = pcb->local_port;\n"
  "    npcb->local_port = tcphdr->dest; /* roamstack patch \"transparent\" */\n"
  "          increase = LWIP_MIN(acked, (tcpwnd_size_t)(num_seg * pcb->mss));\n"
  "          increase = (pcb->flags & TF_RTO) ? LWIP_MIN(acked, (tcpwnd_size_t)(num_seg * pcb->mss)) : acked;\n"
  "  if ((pcb->flags & TF_RXCLOSED) == 0) {\n    /* Update the PCB (in)activity timer unless rx is closed (see tcp_shutdown) */\n"
  "  if (pcb->state != SYN_SENT && pcb->state != SYN_RCVD &&\n      !roam_lwip_tcp_segment_acceptable(pcb->rcv_nxt, pcb->rcv_wnd, pcb->rcv_ann_right_edge, seqno, tcplen)) {\n    /* roamstack patch \"sequence check first\" (RFC 793 p. 69, RFC 5961) */\n    if (roam_lwip_tcp_unacceptable_ack_allowed(pcb->rcv_nxt, seqno, tcplen)) {\n      tcp_send_empty_ack(pcb);\n    }\n    return ERR_OK;\n  }\n  if ((pcb->flags & TF_RXCLOSED) == 0) {\n    /* Update the PCB (in)activity timer unless rx is closed (see tcp_shutdown) */\n")

roam_lwip_patch_file(src/include/lwip/priv/tcp_priv.h LWIP_PATCHED_TCP_PRIV_H
  "extern u8_t tcp_active_pcbs_changed;\n"
  "extern u8_t tcp_active_pcbs_changed;\n/* roamstack patch \"active hook\": told when a pcb joins (1) or leaves (0) tcp_active_pcbs */\ntypedef void (*roam_lwip_tcp_active_fn)(struct tcp_pcb *pcb, int active);\nextern roam_lwip_tcp_active_fn roam_lwip_tcp_active_hook;\n#define roam_lwip_tcp_active_changed(pcb, active) \\\n  do { if (roam_lwip_tcp_active_hook != NULL) roam_lwip_tcp_active_hook((pcb), (active)); } while (0)\n"
  "    TCP_REG(&tcp_active_pcbs, npcb);               \\\n"
  "    TCP_REG(&tcp_active_pcbs, npcb);               \\\n    roam_lwip_tcp_active_changed(npcb, 1);         \\\n"
  "    TCP_RMV(&tcp_active_pcbs, npcb);               \\\n"
  "    TCP_RMV(&tcp_active_pcbs, npcb);               \\\n    roam_lwip_tcp_active_changed(npcb, 0);         \\\n")

roam_lwip_patch_file(src/core/tcp.c LWIP_PATCHED_TCP_C
  "u8_t tcp_active_pcbs_changed;\n"
  "u8_t tcp_active_pcbs_changed;\nroam_lwip_tcp_active_fn roam_lwip_tcp_active_hook; /* roamstack patch \"active hook\" */\n\n/* roamstack patch \"persist split\": the bytes of the unsent head that fit the window,\n * counted from the head's first byte (which may lie before lastack) and capped at u16. */\nstatic u16_t\nroam_tcp_persist_split(const struct tcp_pcb *pcb)\n{\n  s32_t used;\n  u32_t split;\n  if (pcb->unsent == NULL) {\n    return 1;\n  }\n  used = (s32_t)(lwip_ntohl(pcb->unsent->tcphdr->seqno) - pcb->lastack);\n  if (used >= 0) {\n    split = pcb->snd_wnd > (u32_t)used ? pcb->snd_wnd - (u32_t)used : 1;\n  } else {\n    split = (u32_t)(-used) + pcb->snd_wnd;\n  }\n  return (u16_t)LWIP_MAX(1u, LWIP_MIN(split, 0xFFFFu));\n}\n"
  "              if (tcp_split_unsent_seg(pcb, (u16_t)pcb->snd_wnd) == ERR_OK) {\n"
  "              if (tcp_split_unsent_seg(pcb, roam_tcp_persist_split(pcb)) == ERR_OK) {\n"
  "  TCP_RMV(pcblist, pcb);\n"
  "  TCP_RMV(pcblist, pcb);\n  if (pcblist == &tcp_active_pcbs) {\n    roam_lwip_tcp_active_changed(pcb, 0);\n  }\n"
  "        tcp_active_pcbs = pcb->next;\n      }\n"
  "        tcp_active_pcbs = pcb->next;\n      }\n      roam_lwip_tcp_active_changed(pcb, 0);\n")
roam_lwip_patch_file(src/core/ipv4/ip4.c LWIP_PATCHED_IP4_C
  "    if (ip4_input_accept(inp)) {\n"
  "    if (ip4_input_accept(inp) || roam_lwip_netif_accepts_any(inp)) { /* roamstack patch \"transparent\" */\n")
list(REMOVE_ITEM LWIP_CORE_SOURCES "${LWIP_SOURCE_DIR}/src/core/ipv4/ip4.c")
list(APPEND LWIP_CORE_SOURCES "${LWIP_PATCHED_IP4_C}")
# tcp.c is compiled from the patched copy (this file is included by Lwip.cmake, before it
# builds the library from LWIP_CORE_SOURCES).
list(REMOVE_ITEM LWIP_CORE_SOURCES "${LWIP_SOURCE_DIR}/src/core/tcp.c")
list(APPEND LWIP_CORE_SOURCES "${LWIP_PATCHED_TCP_C}")

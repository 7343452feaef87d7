# Builds lwIP 2.1.3 as a static library from Debian's `lwip` source package (fetched by
# tools/setup into ~/.cache/roamstack/lwip-src) or from any lwIP tree given with
# -DLWIP_SOURCE_DIR=. Our own lwipopts.h and arch/cc.h come from stack/lwip_port; Debian's
# port/include (whose lwipopts.h says NO_SYS=0) is kept off the include path.
set(LWIP_SOURCE_DIR "$ENV{HOME}/.cache/roamstack/lwip-src" CACHE PATH "lwIP source tree")
if(NOT EXISTS "${LWIP_SOURCE_DIR}/src/core/tcp.c")
  message(FATAL_ERROR "lwIP source not found at ${LWIP_SOURCE_DIR}: run tools/setup "
                      "or pass -DLWIP_SOURCE_DIR=/path/to/lwip")
endif()

file(GLOB LWIP_CORE_SOURCES
     "${LWIP_SOURCE_DIR}/src/core/*.c"
     "${LWIP_SOURCE_DIR}/src/core/ipv4/*.c"
     "${LWIP_SOURCE_DIR}/src/core/ipv6/*.c")
include(${CMAKE_CURRENT_LIST_DIR}/LwipPatches.cmake)
list(REMOVE_ITEM LWIP_CORE_SOURCES "${LWIP_SOURCE_DIR}/src/core/tcp_out.c"
                                   "${LWIP_SOURCE_DIR}/src/core/tcp_in.c")
add_library(lwip STATIC ${LWIP_CORE_SOURCES} ${LWIP_PATCHED_TCP_OUT_C} ${LWIP_PATCHED_TCP_IN_C}
            ${PROJECT_SOURCE_DIR}/stack/lwip_port/sys_arch.c)
# The patched copies' include directory comes before the original tree.
target_include_directories(lwip SYSTEM PUBLIC
  ${PROJECT_SOURCE_DIR}/stack/lwip_port
  ${CMAKE_BINARY_DIR}/lwip-patched/src/include
  ${LWIP_SOURCE_DIR}/src/include)
# Third-party code: built with its own warnings silenced, never with -Werror.
target_compile_options(lwip PRIVATE -w)
set_target_properties(lwip PROPERTIES C_STANDARD 11 POSITION_INDEPENDENT_CODE ON)

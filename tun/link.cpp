#include "tun/link.hpp"

// Link is an interface; this file anchors its vtable.

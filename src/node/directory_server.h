/* The central look-up service of the peer-to-peer model (peernet directory).
 * Its interface is the public one: pn_directory_* in peernet.h. */
#ifndef PN_NODE_DIRECTORY_SERVER_H
#define PN_NODE_DIRECTORY_SERVER_H
#ifndef PN_INTERNAL
#error "an internal header of libpeernet: a program includes <peernet.h> only"
#endif
#include "peernet.h"
#endif

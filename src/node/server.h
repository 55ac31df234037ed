/* The central server of the client-server model: stores uploads and serves
 * downloads to many clients at once. Its interface is the public one:
 * pn_server_* in peernet.h. */
#ifndef PN_NODE_SERVER_H
#define PN_NODE_SERVER_H
#ifndef PN_INTERNAL
#error "an internal header of libpeernet: a program includes <peernet.h> only"
#endif
#include "peernet.h"
#endif

/* The client side of the client-server model: put, get and ls against a
 * server, each a transfer on the caller's loop. Its interface is the public
 * one: pn_client_* and pn_transfer_* in peernet.h. */
#ifndef PN_NODE_CLIENT_H
#define PN_NODE_CLIENT_H
#ifndef PN_INTERNAL
#error "an internal header of libpeernet: a program includes <peernet.h> only"
#endif
#include "peernet.h"
#endif

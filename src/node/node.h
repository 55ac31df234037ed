/* A peer-to-peer node: serves what it holds to other peers, finds providers
 * through a discovery method, downloads from every provider at once, and
 * takes commands on a control socket. Its interface is the public one:
 * pn_node_* in peernet.h. */
#ifndef PN_NODE_NODE_H
#define PN_NODE_NODE_H
#ifndef PN_INTERNAL
#error "an internal header of libpeernet: a program includes <peernet.h> only"
#endif

#include "peernet.h"

#define PN_NODE_ERR_MAX 512          /* room for the one-line reason of an error */

#endif

/* What a discovery method (the directory client, flooding) reports to the
 * node that owns it.
 *
 * Discovery never answers a control client and never touches a download: it
 * hands what it learnt up through these callbacks, and its owner decides what
 * to do with it (dial providers, fail a download, write reply lines). Every
 * callback may be NULL. None is called after the method was stopped. */
#ifndef PN_NODE_DISCOVERY_H
#define PN_NODE_DISCOVERY_H
#ifndef PN_INTERNAL
#error "an internal header of libpeernet: a program includes <peernet.h> only"
#endif

#include <stddef.h>
#include <stdint.h>
#include "peernet.h"
#include "wire/wire.h"

struct discovery_provider {
	uint8_t id[PN_ID_BYTES];
	char addr[PN_DIR_ADDR_MAX + 1];
};

struct discovery_events {
	void *ud; /* handed back to every callback */
	/* n providers of cid (n may be 0); total: how many the method knows of,
	 * at least n. p is valid only during the call. */
	void (*providers_cb)(void *ud, const struct pn_cid *cid, const struct discovery_provider *p, size_t n,
			     uint32_t total);
	/* The look-up of cid is over. err PN_OK: it was answered and `found`
	 * answers came back (0: nobody has it); PN_ELIMIT: it was forgotten
	 * (too many in flight), ask again later; any other code: it failed (the
	 * service went away or refused). */
	void (*lookup_done_cb)(void *ud, const struct pn_cid *cid, int err, uint32_t found);
	/* One match of the search started with `token`; name is name_len bytes,
	 * not NUL-terminated, valid only during the call. */
	void (*search_result_cb)(void *ud, void *token, const struct pn_cid *cid, uint32_t providers, const char *name,
				 size_t name_len);
	/* The search is over: why is NULL when every result was reported, else
	 * one line saying why it failed. No callback names the token afterwards. */
	void (*search_done_cb)(void *ud, void *token, const char *why);
	/* The directory (re)registered this node and was sent the store's
	 * objects: offer what else the node serves (downloads in progress). */
	void (*registered_cb)(void *ud);
	/* The method's next wake-up may have moved earlier: re-arm the timer. */
	void (*wake_cb)(void *ud);
};

#endif

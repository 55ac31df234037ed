/* The node's status as JSON: what `peernet status --json` prints, built from
 * the snapshot the node fills (struct ctl_status) and the store. Kept apart
 * from the control socket so that another front end (a status page's
 * /api/status) gives the same document. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "node/node_ctl.h"
#include "crypto/crypto.h"
#include "store/store.h"
#include "util/json.h"

/* The address bound: the --listen host with the port the system chose. */
static void bound_addr(const struct ctl_status *st, char *out, size_t cap)
{
	snprintf(out, cap, "%s", st->listen ? st->listen : "");
	char *colon = strrchr(out, ':');
	if (colon)
		snprintf(colon, cap - (size_t)(colon - out), ":%u", st->port);
}

static enum pn_discovery discovery_of(const char *name)
{
	if (!name)
		return 0;
	if (!strcmp(name, "directory"))
		return PN_DISCOVERY_DIRECTORY;
	if (!strcmp(name, "flood"))
		return PN_DISCOVERY_FLOOD;
	return !strcmp(name, "dht") ? PN_DISCOVERY_DHT : 0;
}

json_t *ctl_status_json(const struct ctl_status *st, const struct store *store, size_t max_shares)
{
	char bound[PN_ADDR_STR_MAX + 8];
	size_t ns = store ? store_count(store) : 0, nshown = ns < max_shares ? ns : max_shares;
	struct pn_peer_info *peers = calloc(st->npeers ? st->npeers : 1, sizeof *peers);
	struct pn_share_info *shares = calloc(nshown ? nshown : 1, sizeof *shares);
	struct pn_progress *transfers = calloc(st->ntransfers ? st->ntransfers : 1, sizeof *transfers);
	json_t *doc = NULL;
	if (!peers || !shares || !transfers)
		goto out;
	bound_addr(st, bound, sizeof bound);
	struct pn_node_report r = {
		.status = {
			.port = st->port,
			.discovery = discovery_of(st->discovery),
			.discovery_ready = st->directory_registered,
			.directory_refused = st->directory_refused,
			.peers = st->npeers,
			.neighbors = st->flood_neighbors,
			.downloads = st->ntransfers,
			.shares = ns,
			.bytes_up = st->bytes_up,
			.bytes_down = st->bytes_down,
			.wire_up = st->wire_up,
			.wire_down = st->wire_down,
			.lookups = st->lookups,
			.lookup_msgs = st->lookup_msgs,
			.rate_up = st->rate_up,
			.rate_down = st->rate_down,
		},
		.listen = bound,
		.directory = st->directory,
		.flood_on = st->flood,
		.flood = {
			.queries_started = st->flood_stats.queries_started,
			.queries_sent = st->flood_stats.queries_sent,
			.queries_received = st->flood_stats.queries_received,
			.duplicates_dropped = st->flood_stats.duplicates_dropped,
			.rate_limited = st->flood_stats.rate_limited,
			.hits_sent = st->flood_stats.hits_sent,
			.hits_received = st->flood_stats.hits_received,
		},
		.peers = peers,
		.npeers = st->npeers,
		.shares = shares,
		.nshares = nshown,
		.transfers = transfers,
		.ntransfers = st->ntransfers,
	};
	memcpy(r.status.node_id, st->node_id, PN_ID_BYTES);
	for (size_t i = 0; i < st->npeers; i++) {
		const struct ctl_peer_status *p = &st->peers[i];
		struct pn_peer_info *pi = &peers[i];
		memcpy(pi->id, p->id, PN_ID_BYTES);
		snprintf(pi->addr, sizeof pi->addr, "%s", p->addr);
		pi->outgoing = p->outgoing;
		pi->neighbor = p->neighbor;
		pi->seed_server = p->seed_server;
		pi->peer_choking = p->peer_choking;
		pi->am_choking = p->am_choking;
		pi->bytes_to = p->bytes_to;
		pi->bytes_from = p->bytes_from;
		pi->rate_to = p->rate_to;
		pi->rate_from = p->rate_from;
	}
	for (size_t i = 0; i < nshown; i++) {
		const struct store_object *o = store_at(store, i);
		shares[i] = (struct pn_share_info){.cid = o->cid, .name = o->name};
	}
	for (size_t i = 0; i < st->ntransfers; i++) {
		const struct ctl_transfer_status *d = &st->transfers[i];
		transfers[i] = (struct pn_progress){.cid = d->cid, .name = d->name, .total = d->cid.size,
						    .chunks = d->chunks, .chunks_have = d->have,
						    .bytes_downloaded = d->bytes_down};
	}
	doc = pn__node_report_value(&r);
out:
	free(peers);
	free(shares);
	free(transfers);
	return doc;
}

json_t *ctl_status_document(void (*status_cb)(void *ud, struct ctl_status *out), void *ud,
			    const struct store *store)
{
	struct ctl_status st = {0};
	st.peers = calloc(CTL_STATUS_PEERS_MAX, sizeof *st.peers);
	st.transfers = calloc(CTL_STATUS_TRANSFERS_MAX, sizeof *st.transfers);
	json_t *doc = NULL;
	if (st.peers && st.transfers) {
		status_cb(ud, &st);
		doc = ctl_status_json(&st, store, CTL_STATUS_SHARES_MAX);
	}
	free(st.peers);
	free(st.transfers);
	return doc;
}

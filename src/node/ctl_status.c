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

/* Appends item (released) to arr; false if either is NULL or memory ran out. */
static bool append(json_t *arr, json_t *item)
{
	return arr && item && json_array_append_new(arr, item) == 0;
}

/* The address bound: the --listen host with the port the system chose. */
static void bound_addr(const struct ctl_status *st, char *out, size_t cap)
{
	snprintf(out, cap, "%s", st->listen ? st->listen : "");
	char *colon = strrchr(out, ':');
	if (colon)
		snprintf(colon, cap - (size_t)(colon - out), ":%u", st->port);
}

static json_t *peer_json(const struct ctl_peer_status *p)
{
	char pid[PN_NODE_ID_STR_LEN + 1];
	pn_node_id_format(p->id, pid);
	json_t *o = pn_json_with_text(json_pack("{s:s}", "id", pid), "address", p->addr);
	o = pn_json_merge(o, json_pack("{s:s,s:b,s:b,s:b,s:b,s:I,s:I}", "direction", p->outgoing ? "out" : "in",
				  "neighbor", p->neighbor, "seed_server", p->seed_server, "choking_us",
				  p->peer_choking, "we_choke", p->am_choking, "bytes_to", (json_int_t)p->bytes_to,
				  "bytes_from", (json_int_t)p->bytes_from));
	return pn_json_merge(o, json_pack("{s:I,s:I}", "rate_to", (json_int_t)p->rate_to, "rate_from",
					  (json_int_t)p->rate_from));
}

static json_t *share_json(const struct store_object *o)
{
	char id[PN_CID_STR_LEN + 1];
	pn_cid_format(&o->cid, id);
	json_t *j = pn_json_with_text(json_pack("{s:s}", "id", id), "name", o->name);
	return pn_json_merge(j, json_pack("{s:I}", "size", (json_int_t)o->cid.size));
}

static json_t *transfer_json(const struct ctl_transfer_status *d)
{
	char id[PN_CID_STR_LEN + 1];
	pn_cid_format(&d->cid, id);
	json_t *j = pn_json_with_text(json_pack("{s:s}", "id", id), "name", d->name);
	return pn_json_merge(j, json_pack("{s:I,s:I,s:I,s:I}", "size", (json_int_t)d->cid.size, "chunks",
				  (json_int_t)d->chunks, "chunks_have", (json_int_t)d->have, "bytes_downloaded",
				  (json_int_t)d->bytes_down));
}

json_t *ctl_status_json(const struct ctl_status *st, const struct store *store, size_t max_shares)
{
	char idhex[PN_NODE_ID_STR_LEN + 1], bound[PN_ADDR_STR_MAX + 8];
	pn_node_id_format(st->node_id, idhex);
	bound_addr(st, bound, sizeof bound);
	json_t *s = pn_json_with_text(json_pack("{s:s}", "node_id", idhex), "listen", bound);
	s = pn_json_merge(s, json_pack("{s:I,s:s}", "port", (json_int_t)st->port, "discovery",
			       st->discovery ? st->discovery : "?"));
	if (s && st->directory) {
		json_t *d = pn_json_with_text(json_object(), "address", st->directory);
		d = pn_json_merge(d, json_pack("{s:b,s:I}", "connected", st->directory_registered, "refused_shares",
				       (json_int_t)st->directory_refused));
		if (json_object_set_new(s, "directory", d) != 0) {
			json_decref(s);
			s = NULL;
		}
	}
	if (s && st->flood) {
		const struct flood_stats *fs = &st->flood_stats;
		s = pn_json_merge(s, json_pack("{s:{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}}", "flood", "neighbors",
				       (json_int_t)st->flood_neighbors, "queries_started", (json_int_t)fs->queries_started,
				       "queries_sent", (json_int_t)fs->queries_sent, "queries_received",
				       (json_int_t)fs->queries_received, "duplicates_dropped",
				       (json_int_t)fs->duplicates_dropped, "rate_limited", (json_int_t)fs->rate_limited,
				       "hits_sent", (json_int_t)fs->hits_sent, "hits_received", (json_int_t)fs->hits_received));
	}
	if (s && st->dht) {
		const struct dht_node_stats *ds = &st->dht_stats;
		s = pn_json_merge(s, json_pack("{s:{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}}", "dht", "contacts",
				       (json_int_t)ds->contacts, "records_stored", (json_int_t)ds->records_stored,
				       "lookups", (json_int_t)ds->lookups, "lookup_messages", (json_int_t)ds->lookup_msgs,
				       "rounds_last", (json_int_t)ds->rounds_last, "rounds_median",
				       (json_int_t)ds->rounds_median, "messages_last", (json_int_t)ds->msgs_last,
				       "messages_median", (json_int_t)ds->msgs_median, "datagrams_received",
				       (json_int_t)ds->datagrams_in, "datagrams_sent", (json_int_t)ds->datagrams_out,
				       "datagrams_dropped", (json_int_t)ds->bad_datagrams, "records_dropped",
				       (json_int_t)ds->bad_records));
	}
	json_t *peers = json_array(), *shares = json_array(), *transfers = json_array();
	bool ok = s && peers && shares && transfers;
	for (size_t i = 0; ok && i < st->npeers; i++)
		ok = append(peers, peer_json(&st->peers[i]));
	size_t ns = store ? store_count(store) : 0;
	for (size_t i = 0; ok && i < ns && i < max_shares; i++)
		ok = append(shares, share_json(store_at(store, i)));
	for (size_t i = 0; ok && i < st->ntransfers; i++)
		ok = append(transfers, transfer_json(&st->transfers[i]));
	json_t *totals = json_pack("{s:I,s:I,s:I,s:I,s:I,s:I}", "bytes_uploaded", (json_int_t)st->bytes_up,
				   "bytes_downloaded", (json_int_t)st->bytes_down, "wire_bytes_sent",
				   (json_int_t)st->wire_up, "wire_bytes_received", (json_int_t)st->wire_down, "lookups",
				   (json_int_t)st->lookups, "lookup_messages", (json_int_t)st->lookup_msgs);
	json_t *rates = json_pack("{s:I,s:I}", "upload", (json_int_t)st->rate_up, "download", (json_int_t)st->rate_down);
	if (!ok || !totals || !rates) {
		json_decref(rates);
		json_decref(s);
		json_decref(peers);
		json_decref(shares);
		json_decref(transfers);
		json_decref(totals);
		return NULL;
	}
	/* Each set takes its value, on failure too. */
	int bad = json_object_set_new(s, "peers", peers);
	bad |= json_object_set_new(s, "shares", shares);
	bad |= json_object_set_new(s, "shares_total", json_integer((json_int_t)ns));
	bad |= json_object_set_new(s, "transfers", transfers);
	bad |= json_object_set_new(s, "totals", totals);
	bad |= json_object_set_new(s, "rates", rates);
	if (bad) {
		json_decref(s);
		return NULL;
	}
	return s;
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

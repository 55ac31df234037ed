/* What a program prints for the public structs (peernet.h, "output"): the
 * JSON of `peernet ... --json` and the text of `peernet status`, written
 * here once, so that the node's control socket, its status page and every
 * client print the same bytes. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "node/node_ctl.h"
#include "util/json.h"

/* {"id":ID} */
static json_t *with_id(const struct pn_cid *cid)
{
	char id[PN_CID_STR_LEN + 1];
	pn_cid_format(cid, id);
	return json_pack("{s:s}", "id", id);
}

/* v written into *out, released. */
static int dump_to(json_t *v, char **out)
{
	*out = pn__json_dump(v);
	return *out ? PN_OK : PN_ENOMEM;
}

static const char *discovery_name(enum pn_discovery d)
{
	switch (d) {
	case PN_DISCOVERY_DIRECTORY: return "directory";
	case PN_DISCOVERY_FLOOD: return "flood";
	case PN_DISCOVERY_DHT: return "dht";
	default: return "?";
	}
}

static json_t *share_value(const struct pn_share_info *s)
{
	json_t *o = pn__json_with_text(with_id(&s->cid), "name", s->name ? s->name : "");
	return pn__json_merge(o, json_pack("{s:I}", "size", (json_int_t)s->cid.size));
}

int pn_share_json(const struct pn_share_info *s, char **out)
{
	if (!out)
		return PN_EINVAL;
	*out = NULL;
	return s ? dump_to(share_value(s), out) : PN_EINVAL;
}

int pn_put_json(const struct pn_put_info *f, char **out)
{
	if (!out)
		return PN_EINVAL;
	*out = NULL;
	if (!f)
		return PN_EINVAL;
	json_t *o = pn__json_with_text(with_id(&f->cid), "name", f->name ? f->name : "");
	o = pn__json_merge(o, json_pack("{s:I,s:I}", "size", (json_int_t)f->cid.size, "bytes_sent",
					(json_int_t)f->bytes_sent));
	return dump_to(o, out);
}

static json_t *search_hit_value(const struct pn_search_hit *h)
{
	json_t *name = pn__json_text(h->name ? h->name : "", h->name ? h->name_len : 0, NULL);
	json_t *o = with_id(&h->cid);
	if (!o || !name || json_object_set_new(o, "name", name) != 0) {
		if (!o)
			json_decref(name);
		json_decref(o);
		return NULL;
	}
	return pn__json_merge(o, json_pack("{s:I,s:I}", "size", (json_int_t)h->cid.size, "providers",
					   (json_int_t)h->providers));
}

int pn_search_hit_json(const struct pn_search_hit *h, char **out)
{
	if (!out)
		return PN_EINVAL;
	*out = NULL;
	return h ? dump_to(search_hit_value(h), out) : PN_EINVAL;
}

int pn_download_json(const struct pn_cid *cid, const struct pn_download_result *r, const char *why, char **out)
{
	if (!out)
		return PN_EINVAL;
	*out = NULL;
	if (!cid || (!r && !why))
		return PN_EINVAL;
	json_t *o = pn__json_merge(with_id(cid), json_pack("{s:b}", "ok", r != NULL));
	if (!r)
		return dump_to(pn__json_with_text(o, "error", why), out);
	o = pn__json_with_text(o, "name", r->name ? r->name : "");
	o = pn__json_with_text(o, "path", r->path ? r->path : "");
	o = pn__json_merge(o, json_pack("{s:I,s:I,s:I,s:f,s:I}", "size", (json_int_t)r->cid.size, "bytes_downloaded",
					(json_int_t)r->bytes_downloaded, "bytes_resumed", (json_int_t)r->bytes_resumed,
					"seconds", round(r->seconds * 1000) / 1000, "peers", (json_int_t)r->providers));
	return dump_to(o, out);
}

int pn_transfer_json(const struct pn_cid *cid, int err, const char *why, const struct pn_transfer_result *r,
		     char **out)
{
	if (!out)
		return PN_EINVAL;
	*out = NULL;
	if (!cid || !r || (err != PN_OK && !why))
		return PN_EINVAL;
	json_t *o = pn__json_merge(with_id(cid), json_pack("{s:b}", "ok", err == PN_OK));
	if (err != PN_OK) {
		o = pn__json_with_text(o, "error", why);
		o = pn__json_merge(o, json_pack("{s:I,s:I}", "bytes_downloaded", (json_int_t)r->bytes_downloaded,
						"bytes_resumed", (json_int_t)r->bytes_resumed));
		return dump_to(o, out);
	}
	double mibs = r->seconds > 0 ? (double)r->bytes_downloaded / r->seconds / 1048576.0 : 0;
	o = pn__json_with_text(o, "name", r->name ? r->name : "");
	o = pn__json_with_text(o, "path", r->path ? r->path : "");
	o = pn__json_merge(o, json_pack("{s:I,s:I,s:I,s:f,s:f}", "size", (json_int_t)cid->size, "bytes_downloaded",
					(json_int_t)r->bytes_downloaded, "bytes_resumed", (json_int_t)r->bytes_resumed,
					"seconds", round(r->seconds * 1000) / 1000, "mib_per_s", round(mibs * 10) / 10));
	return dump_to(o, out);
}

/* ---------------------------------------------------------------- the report */

static json_t *peer_value(const struct pn_peer_info *p)
{
	char pid[PN_NODE_ID_STR_LEN + 1];
	pn_node_id_format(p->id, pid);
	json_t *o = pn__json_with_text(json_pack("{s:s}", "id", pid), "address", p->addr);
	o = pn__json_merge(o, json_pack("{s:s,s:b,s:b,s:b,s:b,s:I,s:I}", "direction", p->outgoing ? "out" : "in",
					"neighbor", p->neighbor, "seed_server", p->seed_server, "choking_us",
					p->peer_choking, "we_choke", p->am_choking, "bytes_to", (json_int_t)p->bytes_to,
					"bytes_from", (json_int_t)p->bytes_from));
	return pn__json_merge(o, json_pack("{s:I,s:I}", "rate_to", (json_int_t)p->rate_to, "rate_from",
					   (json_int_t)p->rate_from));
}

static json_t *transfer_value(const struct pn_progress *d)
{
	json_t *j = pn__json_with_text(with_id(&d->cid), "name", d->name ? d->name : "");
	return pn__json_merge(j, json_pack("{s:I,s:I,s:I,s:I}", "size", (json_int_t)d->cid.size, "chunks",
					   (json_int_t)d->chunks, "chunks_have", (json_int_t)d->chunks_have,
					   "bytes_downloaded", (json_int_t)d->bytes_downloaded));
}

/* Appends item (released) to arr; false if either is NULL or memory ran out. */
static bool append(json_t *arr, json_t *item)
{
	if (!arr || !item) {
		json_decref(item);
		return false;
	}
	return json_array_append_new(arr, item) == 0;
}

json_t *pn__node_report_value(const struct pn_node_report *r)
{
	const struct pn_node_status *st = &r->status;
	char idhex[PN_NODE_ID_STR_LEN + 1];
	pn_node_id_format(st->node_id, idhex);
	json_t *s = pn__json_with_text(json_pack("{s:s}", "node_id", idhex), "listen", r->listen ? r->listen : "");
	s = pn__json_merge(s, json_pack("{s:I,s:s}", "port", (json_int_t)st->port, "discovery",
					discovery_name(st->discovery)));
	if (s && r->directory) {
		json_t *d = pn__json_with_text(json_object(), "address", r->directory);
		d = pn__json_merge(d, json_pack("{s:b,s:I}", "connected", st->discovery_ready, "refused_shares",
						(json_int_t)st->directory_refused));
		if (json_object_set_new(s, "directory", d) != 0) {
			json_decref(s);
			s = NULL;
		}
	}
	if (s && r->flood_on) {
		const struct pn_flood_info *fs = &r->flood;
		s = pn__json_merge(s, json_pack("{s:{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I}}", "flood", "neighbors",
						(json_int_t)st->neighbors, "queries_started", (json_int_t)fs->queries_started,
						"queries_sent", (json_int_t)fs->queries_sent, "queries_received",
						(json_int_t)fs->queries_received, "duplicates_dropped",
						(json_int_t)fs->duplicates_dropped, "rate_limited", (json_int_t)fs->rate_limited,
						"hits_sent", (json_int_t)fs->hits_sent, "hits_received",
						(json_int_t)fs->hits_received));
	}
	json_t *peers = json_array(), *shares = json_array(), *transfers = json_array();
	bool ok = s && peers && shares && transfers;
	for (size_t i = 0; ok && i < r->npeers; i++)
		ok = append(peers, peer_value(&r->peers[i]));
	for (size_t i = 0; ok && i < r->nshares; i++)
		ok = append(shares, share_value(&r->shares[i]));
	for (size_t i = 0; ok && i < r->ntransfers; i++)
		ok = append(transfers, transfer_value(&r->transfers[i]));
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
	bad |= json_object_set_new(s, "shares_total", json_integer((json_int_t)st->shares));
	bad |= json_object_set_new(s, "transfers", transfers);
	bad |= json_object_set_new(s, "totals", totals);
	bad |= json_object_set_new(s, "rates", rates);
	if (bad) {
		json_decref(s);
		return NULL;
	}
	return s;
}

int pn_node_report_json(const struct pn_node_report *r, char **out)
{
	if (!out)
		return PN_EINVAL;
	*out = NULL;
	return r ? dump_to(pn__node_report_value(r), out) : PN_EINVAL;
}

/* s as valid UTF-8 for a terminal line (the JSON form of a name), in buf. */
static const char *shown(const char *s, char *buf, size_t cap)
{
	return s ? pn_text_utf8(s, strlen(s), buf, cap) : "";
}

int pn_node_report_text(const struct pn_node_report *r, char **out)
{
	if (!out)
		return PN_EINVAL;
	*out = NULL;
	if (!r)
		return PN_EINVAL;
	const struct pn_node_status *st = &r->status;
	/* U+FFFD takes three bytes where a bad byte took one */
	char idhex[PN_NODE_ID_STR_LEN + 1], a[3 * PN_NAME_MAX + 1], b[3 * PN_NAME_MAX + 1];
	size_t len = 0;
	char *text = NULL;
	FILE *f = open_memstream(&text, &len);
	if (!f)
		return PN_ENOMEM;
	pn_node_id_format(st->node_id, idhex);
	fprintf(f, "node       %s\n", idhex);
	fprintf(f, "listening  %s, discovery %s\n", shown(r->listen, a, sizeof a), discovery_name(st->discovery));
	if (r->directory) {
		uint64_t refused = st->directory_refused;
		fprintf(f, "directory  %s, %s%s\n", shown(r->directory, a, sizeof a),
			st->discovery_ready ? "registered" : "unreachable, retrying",
			refused ? "; it refused to register some shares (its limits): others cannot find them" : "");
		if (refused)
			fprintf(f, "           %llu shares not registered\n", (unsigned long long)refused);
	}
	if (r->flood_on)
		fprintf(f, "flood      %llu neighbours, %llu queries sent, %llu received, %llu duplicates dropped\n",
			(unsigned long long)st->neighbors, (unsigned long long)r->flood.queries_sent,
			(unsigned long long)r->flood.queries_received, (unsigned long long)r->flood.duplicates_dropped);
	fprintf(f, "peers      %zu\n", r->npeers);
	for (size_t i = 0; i < r->npeers; i++) {
		const struct pn_peer_info *p = &r->peers[i];
		pn_node_id_format(p->id, idhex);
		fprintf(f, "  %.16s  %-22s %s  sent %llu  received %llu%s%s\n", idhex, shown(p->addr, a, sizeof a),
			p->outgoing ? "out" : "in ", (unsigned long long)p->bytes_to, (unsigned long long)p->bytes_from,
			p->am_choking ? "" : "  (unchoked)", p->seed_server ? "  (seed server)" : "");
	}
	uint64_t total = st->shares;
	fprintf(f, "shares     %llu\n", (unsigned long long)total);
	for (size_t i = 0; i < r->nshares; i++) {
		char id[PN_CID_STR_LEN + 1];
		pn_cid_format(&r->shares[i].cid, id);
		fprintf(f, "  %s  %llu  %s\n", id, (unsigned long long)r->shares[i].cid.size,
			shown(r->shares[i].name, b, sizeof b));
	}
	if (total > r->nshares)
		fprintf(f, "  ... and %llu more\n", (unsigned long long)(total - r->nshares));
	fprintf(f, "transfers  %zu\n", r->ntransfers);
	for (size_t i = 0; i < r->ntransfers; i++) {
		const struct pn_progress *d = &r->transfers[i];
		char id[PN_CID_STR_LEN + 1];
		pn_cid_format(&d->cid, id);
		fprintf(f, "  %s  %llu/%llu chunks  %s\n", id, (unsigned long long)d->chunks_have,
			(unsigned long long)d->chunks, shown(d->name, b, sizeof b));
	}
	fprintf(f, "totals     uploaded %llu bytes, downloaded %llu bytes, %llu look-ups\n",
		(unsigned long long)st->bytes_up, (unsigned long long)st->bytes_down, (unsigned long long)st->lookups);
	bool failed = ferror(f) != 0;
	if (fclose(f) != 0 || failed || !text) {
		free(text);
		return PN_ENOMEM;
	}
	*out = text;
	return PN_OK;
}

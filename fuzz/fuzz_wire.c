/* libFuzzer target for the wire layer.
 *
 * The input is tried two ways: as a stream (pn_frame_check) and as one frame
 * body (pn_msg_decode). A body that decodes must re-encode to exactly the
 * same bytes, and decoding that again must give the same fields: the wire
 * form is canonical. Entries of LIST, DIR_OFFER, DIR_PROVIDERS, DIR_RESULTS,
 * PEERS and QUERY_HIT are iterated and re-encoded one by one, which must give
 * back the same bytes. Any disagreement aborts.
 */
#include <stdlib.h>
#include <string.h>
#include "wire/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FRAME_CAP (PN_FRAME_HDR + PN_FRAME_MAX)

static uint8_t frame[FRAME_CAP];

static void check(bool ok)
{
	if (!ok)
		abort();
}

static bool bytes_eq(const void *a, const void *b, size_t n)
{
	return n == 0 || (a && b && memcmp(a, b, n) == 0);
}

static bool cid_eq(const struct pn_cid *a, const struct pn_cid *b)
{
	return a->size == b->size && memcmp(a->root, b->root, PN_HASH_BYTES) == 0;
}

/* Field-by-field equality, following pointers. */
static bool msg_eq(const struct pn_msg *a, const struct pn_msg *b)
{
	if (a->type != b->type)
		return false;
	switch (a->type) {
	case PN_MSG_HELLO:
		return memcmp(&a->u.hello, &b->u.hello, sizeof(a->u.hello)) == 0;
	case PN_MSG_ERROR:
		return a->u.error.req_id == b->u.error.req_id && a->u.error.code == b->u.error.code &&
		       a->u.error.text_len == b->u.error.text_len &&
		       bytes_eq(a->u.error.text, b->u.error.text, a->u.error.text_len);
	case PN_MSG_PING:
	case PN_MSG_PONG:
		return a->u.ping.nonce == b->u.ping.nonce;
	case PN_MSG_META_REQ: case PN_MSG_PUT_END: case PN_MSG_PUT_DONE:
	case PN_MSG_CHUNK_REQ: case PN_MSG_CANCEL:
		return a->u.ref.req_id == b->u.ref.req_id && cid_eq(&a->u.ref.cid, &b->u.ref.cid) &&
		       a->u.ref.index == b->u.ref.index;
	case PN_MSG_META:
	case PN_MSG_PUT_BEGIN:
		return a->u.meta.req_id == b->u.meta.req_id && cid_eq(&a->u.meta.cid, &b->u.meta.cid) &&
		       a->u.meta.name_len == b->u.meta.name_len &&
		       bytes_eq(a->u.meta.name, b->u.meta.name, a->u.meta.name_len);
	case PN_MSG_HASH_REQ:
		return a->u.hash_req.req_id == b->u.hash_req.req_id &&
		       cid_eq(&a->u.hash_req.cid, &b->u.hash_req.cid) &&
		       a->u.hash_req.first == b->u.hash_req.first && a->u.hash_req.count == b->u.hash_req.count;
	case PN_MSG_HASHES:
		return a->u.hashes.req_id == b->u.hashes.req_id &&
		       cid_eq(&a->u.hashes.cid, &b->u.hashes.cid) &&
		       a->u.hashes.first == b->u.hashes.first && a->u.hashes.count == b->u.hashes.count &&
		       bytes_eq(a->u.hashes.hashes, b->u.hashes.hashes,
				(size_t)a->u.hashes.count * PN_HASH_BYTES);
	case PN_MSG_CHUNK:
		return a->u.chunk.req_id == b->u.chunk.req_id && cid_eq(&a->u.chunk.cid, &b->u.chunk.cid) &&
		       a->u.chunk.index == b->u.chunk.index && a->u.chunk.len == b->u.chunk.len &&
		       bytes_eq(a->u.chunk.data, b->u.chunk.data, a->u.chunk.len);
	case PN_MSG_LIST_REQ:
		return a->u.list_req.req_id == b->u.list_req.req_id &&
		       a->u.list_req.cursor == b->u.list_req.cursor;
	case PN_MSG_LIST:
		return a->u.list.req_id == b->u.list.req_id &&
		       a->u.list.next_cursor == b->u.list.next_cursor &&
		       a->u.list.count == b->u.list.count && a->u.list.entries_len == b->u.list.entries_len &&
		       bytes_eq(a->u.list.entries, b->u.list.entries, a->u.list.entries_len);
	case PN_MSG_PUT_STATUS:
		return a->u.put_status.req_id == b->u.put_status.req_id &&
		       cid_eq(&a->u.put_status.cid, &b->u.put_status.cid) &&
		       a->u.put_status.flags == b->u.put_status.flags &&
		       a->u.put_status.nchunks == b->u.put_status.nchunks &&
		       bytes_eq(a->u.put_status.bitmap, b->u.put_status.bitmap,
				((size_t)a->u.put_status.nchunks + 7) / 8);
	case PN_MSG_INTERESTED: case PN_MSG_NOT_INTERESTED: case PN_MSG_HAVE:
		return cid_eq(&a->u.cidref.cid, &b->u.cidref.cid) && a->u.cidref.index == b->u.cidref.index;
	case PN_MSG_BITFIELD:
		return cid_eq(&a->u.bitfield.cid, &b->u.bitfield.cid) &&
		       a->u.bitfield.nchunks == b->u.bitfield.nchunks &&
		       bytes_eq(a->u.bitfield.bitmap, b->u.bitfield.bitmap,
				((size_t)a->u.bitfield.nchunks + 7) / 8);
	case PN_MSG_CHOKE:
	case PN_MSG_UNCHOKE:
		return true;
	case PN_MSG_DIR_REGISTER:
		return a->u.dir_register.req_id == b->u.dir_register.req_id &&
		       a->u.dir_register.listen_port == b->u.dir_register.listen_port &&
		       a->u.dir_register.host_len == b->u.dir_register.host_len &&
		       bytes_eq(a->u.dir_register.host, b->u.dir_register.host, a->u.dir_register.host_len);
	case PN_MSG_DIR_OK:
		return a->u.dir_ok.req_id == b->u.dir_ok.req_id &&
		       a->u.dir_ok.heartbeat_ms == b->u.dir_ok.heartbeat_ms;
	case PN_MSG_DIR_OFFER:
		return a->u.dir_offer.req_id == b->u.dir_offer.req_id &&
		       a->u.dir_offer.count == b->u.dir_offer.count &&
		       a->u.dir_offer.entries_len == b->u.dir_offer.entries_len &&
		       bytes_eq(a->u.dir_offer.entries, b->u.dir_offer.entries, a->u.dir_offer.entries_len);
	case PN_MSG_DIR_WITHDRAW: case PN_MSG_DIR_FIND: case PN_MSG_DIR_BYE:
		return a->u.dir_ref.req_id == b->u.dir_ref.req_id && cid_eq(&a->u.dir_ref.cid, &b->u.dir_ref.cid);
	case PN_MSG_DIR_PROVIDERS:
		return a->u.dir_providers.req_id == b->u.dir_providers.req_id &&
		       cid_eq(&a->u.dir_providers.cid, &b->u.dir_providers.cid) &&
		       a->u.dir_providers.total == b->u.dir_providers.total &&
		       a->u.dir_providers.count == b->u.dir_providers.count &&
		       a->u.dir_providers.entries_len == b->u.dir_providers.entries_len &&
		       bytes_eq(a->u.dir_providers.entries, b->u.dir_providers.entries,
				a->u.dir_providers.entries_len);
	case PN_MSG_DIR_SEARCH:
		return a->u.dir_search.req_id == b->u.dir_search.req_id &&
		       a->u.dir_search.query_len == b->u.dir_search.query_len &&
		       bytes_eq(a->u.dir_search.query, b->u.dir_search.query, a->u.dir_search.query_len);
	case PN_MSG_DIR_RESULTS:
		return a->u.dir_results.req_id == b->u.dir_results.req_id &&
		       a->u.dir_results.count == b->u.dir_results.count &&
		       a->u.dir_results.entries_len == b->u.dir_results.entries_len &&
		       bytes_eq(a->u.dir_results.entries, b->u.dir_results.entries, a->u.dir_results.entries_len);
	case PN_MSG_PEERS_REQ:
		return true;
	case PN_MSG_PEERS:
		return a->u.peers.count == b->u.peers.count && a->u.peers.entries_len == b->u.peers.entries_len &&
		       bytes_eq(a->u.peers.entries, b->u.peers.entries, a->u.peers.entries_len);
	case PN_MSG_QUERY:
		return memcmp(a->u.query.qid, b->u.query.qid, PN_QID_BYTES) == 0 &&
		       a->u.query.ttl == b->u.query.ttl && a->u.query.hops == b->u.query.hops &&
		       a->u.query.kind == b->u.query.kind && a->u.query.len == b->u.query.len &&
		       bytes_eq(a->u.query.data, b->u.query.data, a->u.query.len);
	case PN_MSG_QUERY_HIT:
		return memcmp(a->u.query_hit.qid, b->u.query_hit.qid, PN_QID_BYTES) == 0 &&
		       bytes_eq(a->u.query_hit.node_id, b->u.query_hit.node_id, PN_ID_BYTES) &&
		       a->u.query_hit.addr_len == b->u.query_hit.addr_len &&
		       bytes_eq(a->u.query_hit.addr, b->u.query_hit.addr, a->u.query_hit.addr_len) &&
		       a->u.query_hit.count == b->u.query_hit.count &&
		       a->u.query_hit.entries_len == b->u.query_hit.entries_len &&
		       bytes_eq(a->u.query_hit.entries, b->u.query_hit.entries, a->u.query_hit.entries_len);
	default:
		return false;
	}
}

/* Walks a decoded LIST: exactly `count` valid entries that fill the bytes. */
static void check_list(const struct pn_msg_list *l)
{
	struct pn_list_entry e;
	size_t off = 0, seen = 0;
	int err;

	while ((err = pn_list_next(l, &off, &e)) == PN_OK) {
		check(pn_name_valid(e.name, e.name_len));
		check(e.cid.size <= PN_MAX_FILE_SIZE);
		seen++;
	}
	check(err == PN_EAGAIN);
	check(seen == l->count && off == l->entries_len);
}

/* Re-encoding the entries one by one gives back exactly the entry bytes. */
static uint8_t entry_copy[PN_FRAME_MAX];

static bool printable(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if ((uint8_t)s[i] < 0x21 || (uint8_t)s[i] > 0x7e)
			return false;
	return true;
}

/* Walks a decoded DIR_OFFER: exactly `count` (>= 1) valid entries that fill
 * the bytes, and they re-encode to the same bytes. */
static void check_dir_offer(const struct pn_msg_dir_offer *m)
{
	struct pn_list_entry e;
	struct pn_writer w;
	size_t off = 0, seen = 0;
	int err;

	pn_wr_init(&w, entry_copy, sizeof(entry_copy));
	while ((err = pn_dir_offer_next(m, &off, &e)) == PN_OK) {
		check(pn_name_valid(e.name, e.name_len));
		check(e.cid.size <= PN_MAX_FILE_SIZE);
		pn_list_entry_encode(&w, &e);
		seen++;
	}
	check(err == PN_EAGAIN && w.err == 0);
	check(seen >= 1 && seen <= PN_DIR_OFFER_MAX && seen == m->count && off == m->entries_len);
	check(w.len == m->entries_len && bytes_eq(entry_copy, m->entries, w.len));
}

static void check_dir_providers(const struct pn_msg_dir_providers *m)
{
	struct pn_dir_provider_entry e;
	struct pn_writer w;
	size_t off = 0, seen = 0;
	int err;

	pn_wr_init(&w, entry_copy, sizeof(entry_copy));
	while ((err = pn_dir_provider_next(m, &off, &e)) == PN_OK) {
		check(e.node_id && e.addr_len >= 1 && e.addr_len <= PN_DIR_ADDR_MAX);
		check(printable(e.addr, e.addr_len));
		pn_dir_provider_encode(&w, &e);
		seen++;
	}
	check(err == PN_EAGAIN && w.err == 0);
	check(seen <= PN_DIR_RESULTS_MAX && seen <= m->total && seen == m->count && off == m->entries_len);
	check(w.len == m->entries_len && bytes_eq(entry_copy, m->entries, w.len));
}

static void check_dir_results(const struct pn_msg_dir_results *m)
{
	struct pn_dir_result_entry e;
	struct pn_writer w;
	size_t off = 0, seen = 0;
	int err;

	pn_wr_init(&w, entry_copy, sizeof(entry_copy));
	while ((err = pn_dir_result_next(m, &off, &e)) == PN_OK) {
		check(pn_name_valid(e.name, e.name_len));
		check(e.cid.size <= PN_MAX_FILE_SIZE);
		pn_dir_result_encode(&w, &e);
		seen++;
	}
	check(err == PN_EAGAIN && w.err == 0);
	check(seen <= PN_DIR_RESULTS_MAX && seen == m->count && off == m->entries_len);
	check(w.len == m->entries_len && bytes_eq(entry_copy, m->entries, w.len));
}

static void check_peers(const struct pn_msg_peers *m)
{
	struct pn_dir_provider_entry e;
	struct pn_writer w;
	size_t off = 0, seen = 0;
	int err;

	pn_wr_init(&w, entry_copy, sizeof(entry_copy));
	while ((err = pn_peers_next(m, &off, &e)) == PN_OK) {
		check(e.node_id && e.addr_len >= 1 && e.addr_len <= PN_DIR_ADDR_MAX);
		check(printable(e.addr, e.addr_len));
		pn_dir_provider_encode(&w, &e);
		seen++;
	}
	check(err == PN_EAGAIN && w.err == 0);
	check(seen <= PN_PEERS_MAX && seen == m->count && off == m->entries_len);
	check(w.len == m->entries_len && bytes_eq(entry_copy, m->entries, w.len));
}

/* kind 1: 1..255 bytes, no ASCII control byte; kind 2: one valid content ID
 * whose wire form is the data. */
static void check_query(const struct pn_msg_query *m)
{
	if (m->kind == 1) {
		check(m->len >= 1 && m->len <= PN_QUERY_DATA_MAX);
		for (size_t i = 0; i < m->len; i++)
			check(m->data[i] >= 0x20 && m->data[i] != 0x7f);
		return;
	}
	check(m->kind == 2 && m->len == PN_CID_BYTES);
	struct pn_reader r;
	struct pn_cid cid;
	uint8_t again[PN_CID_BYTES];
	struct pn_writer w;
	pn_rd_init(&r, m->data, m->len);
	pn_cid_read(&r, &cid);
	check(r.err == 0 && cid.size <= PN_MAX_FILE_SIZE);
	pn_wr_init(&w, again, sizeof(again));
	pn_cid_write(&w, &cid);
	check(w.err == 0 && w.len == PN_CID_BYTES && memcmp(again, m->data, PN_CID_BYTES) == 0);
}

static void check_query_hit(const struct pn_msg_query_hit *m)
{
	struct pn_list_entry e;
	struct pn_writer w;
	size_t off = 0, seen = 0;
	int err;

	check(m->node_id && m->addr_len >= 1 && m->addr_len <= PN_DIR_ADDR_MAX);
	check(printable(m->addr, m->addr_len));
	pn_wr_init(&w, entry_copy, sizeof(entry_copy));
	while ((err = pn_hit_next(m, &off, &e)) == PN_OK) {
		check(pn_name_valid(e.name, e.name_len));
		check(e.cid.size <= PN_MAX_FILE_SIZE);
		pn_list_entry_encode(&w, &e);
		seen++;
	}
	check(err == PN_EAGAIN && w.err == 0);
	check(seen >= 1 && seen <= PN_HIT_RESULTS_MAX && seen == m->count && off == m->entries_len);
	check(w.len == m->entries_len && bytes_eq(entry_copy, m->entries, w.len));
}

/* Fields the validators promise, checked independently of them. */
static void check_fields(const struct pn_msg *m)
{
	switch (m->type) {
	case PN_MSG_LIST: check_list(&m->u.list); break;
	case PN_MSG_DIR_OFFER: check_dir_offer(&m->u.dir_offer); break;
	case PN_MSG_DIR_PROVIDERS: check_dir_providers(&m->u.dir_providers); break;
	case PN_MSG_DIR_RESULTS: check_dir_results(&m->u.dir_results); break;
	case PN_MSG_PEERS: check_peers(&m->u.peers); break;
	case PN_MSG_QUERY: check_query(&m->u.query); break;
	case PN_MSG_QUERY_HIT: check_query_hit(&m->u.query_hit); break;
	case PN_MSG_HAVE:
		check(m->u.cidref.index < pn_cid_chunks(&m->u.cidref.cid));
		break;
	case PN_MSG_INTERESTED:
	case PN_MSG_NOT_INTERESTED:
		check(m->u.cidref.index == 0);
		break;
	case PN_MSG_BITFIELD:
		check(m->u.bitfield.nchunks == pn_cid_chunks(&m->u.bitfield.cid));
		break;
	case PN_MSG_DIR_REGISTER:
		check(m->u.dir_register.listen_port != 0 && m->u.dir_register.host_len <= PN_DIR_ADDR_MAX);
		check(printable(m->u.dir_register.host, m->u.dir_register.host_len));
		break;
	case PN_MSG_DIR_SEARCH:
		check(m->u.dir_search.query_len >= 1 && m->u.dir_search.query_len <= PN_DIR_QUERY_MAX);
		for (size_t i = 0; i < m->u.dir_search.query_len; i++)
			check((uint8_t)m->u.dir_search.query[i] >= 0x20 && (uint8_t)m->u.dir_search.query[i] != 0x7f);
		break;
	case PN_MSG_DIR_BYE:
		check(m->u.dir_ref.cid.size == 0);
		break;
	default:
		break;
	}
}

static void check_stream(const uint8_t *data, size_t size)
{
	size_t body_len = 0;
	int err = pn_frame_check(data, size, PN_FRAME_MAX, &body_len);

	check(err == PN_OK || err == PN_EAGAIN || err == PN_EPROTO || err == PN_ETOOBIG);
	if (err != PN_OK)
		return;
	check(body_len > 0 && body_len <= PN_FRAME_MAX && body_len <= size - PN_FRAME_HDR);
	struct pn_msg m;
	(void)pn_msg_decode(data + PN_FRAME_HDR, body_len, &m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pn_msg m, again;
	struct pn_writer w;
	size_t body_len;

	check_stream(data, size);

	int err = pn_msg_decode(data, size, &m);
	check(err == PN_OK || err == PN_EPROTO || err == PN_ETOOBIG);
	if (err != PN_OK)
		return 0;
	check(size <= pn_msg_max_body(m.type));
	check_fields(&m);

	pn_wr_init(&w, frame, sizeof(frame));
	check(pn_msg_encode(&m, &w) == PN_OK);
	check(w.len == PN_FRAME_HDR + size);
	check(memcmp(frame + PN_FRAME_HDR, data, size) == 0);
	check(pn_frame_check(frame, w.len, PN_FRAME_MAX, &body_len) == PN_OK && body_len == size);
	check(pn_msg_decode(frame + PN_FRAME_HDR, body_len, &again) == PN_OK);
	check(msg_eq(&m, &again));

	if (m.type == PN_MSG_CHUNK) {
		uint8_t hdr[PN_FRAME_HDR + PN_CHUNK_MSG_HDR];
		pn_chunk_hdr_encode(hdr, m.u.chunk.req_id, &m.u.chunk.cid, m.u.chunk.index, m.u.chunk.len);
		check(memcmp(hdr, frame, sizeof(hdr)) == 0);
	}
	return 0;
}

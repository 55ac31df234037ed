/* Wire format: framing and every message's encode/decode (docs/PROTOCOL.md).
 *
 * Decoding is two steps: parse the layout through a struct pn_reader (which
 * catches truncation), then check the fields with the same validate_*()
 * function that pn_msg_encode() runs before writing. Encoder and decoder can
 * therefore never disagree about what is valid.
 */
#include <string.h>
#include "wire/wire.h"

/* Field sizes. */
#define TYPE_LEN 1
#define U8_LEN 1
#define U16_LEN 2
#define U32_LEN 4
#define U64_LEN 8
#define REQ_ID_LEN U32_LEN
#define BITS_PER_BYTE 8

/* Fixed parts of bodies, type byte included. */
#define HELLO_BODY (TYPE_LEN + U8_LEN + U8_LEN + U16_LEN + U32_LEN)
#define ERROR_HDR (TYPE_LEN + REQ_ID_LEN + U16_LEN + U16_LEN)
#define PING_BODY (TYPE_LEN + U64_LEN)
#define REF_BODY (TYPE_LEN + REQ_ID_LEN + PN_CID_BYTES)
#define REF_INDEX_BODY (REF_BODY + U32_LEN)
#define META_HDR (REF_BODY + U16_LEN)
#define HASH_REQ_BODY (REF_BODY + U32_LEN + U32_LEN)
#define LIST_REQ_BODY (TYPE_LEN + REQ_ID_LEN + U32_LEN)
#define LIST_HDR (TYPE_LEN + REQ_ID_LEN + U32_LEN + U16_LEN)
#define LIST_ENTRY_MAX (PN_CID_BYTES + U16_LEN + PN_NAME_MAX)
#define PUT_STATUS_HDR (REF_BODY + U8_LEN + U32_LEN)
#define BITMAP_MAX ((PN_MAX_CHUNKS + BITS_PER_BYTE - 1) / BITS_PER_BYTE)

/* Swarm and directory messages (issue 3). */
#define EMPTY_BODY TYPE_LEN                               /* CHOKE, UNCHOKE */
#define CIDREF_BODY (TYPE_LEN + PN_CID_BYTES)             /* INTERESTED, NOT_INTERESTED */
#define HAVE_BODY (CIDREF_BODY + U32_LEN)
#define BITFIELD_HDR (CIDREF_BODY + U32_LEN)
#define DIR_REGISTER_HDR (TYPE_LEN + REQ_ID_LEN + U16_LEN + U8_LEN)
#define DIR_OK_BODY (TYPE_LEN + REQ_ID_LEN + U32_LEN)
#define DIR_OFFER_HDR (TYPE_LEN + REQ_ID_LEN + U16_LEN)
#define DIR_REF_BODY (TYPE_LEN + REQ_ID_LEN + PN_CID_BYTES) /* DIR_WITHDRAW, DIR_FIND */
#define DIR_BYE_BODY (TYPE_LEN + REQ_ID_LEN)
#define DIR_PROVIDERS_HDR (TYPE_LEN + REQ_ID_LEN + PN_CID_BYTES + U32_LEN + U16_LEN)
#define DIR_PROVIDER_ENTRY_MAX (PN_ID_BYTES + U8_LEN + PN_DIR_ADDR_MAX)
#define DIR_SEARCH_HDR (TYPE_LEN + REQ_ID_LEN + U16_LEN)
#define DIR_RESULTS_HDR (TYPE_LEN + REQ_ID_LEN + U16_LEN)
#define DIR_RESULT_ENTRY_MAX (PN_CID_BYTES + U32_LEN + U16_LEN + PN_NAME_MAX)

/* Flooding messages (issue 4). PEERS_REQ is an EMPTY_BODY. */
#define PEERS_HDR (TYPE_LEN + U8_LEN)
#define QUERY_HDR (TYPE_LEN + PN_QID_BYTES + U8_LEN + U8_LEN + U8_LEN + U16_LEN)
#define QUERY_HIT_FIXED (TYPE_LEN + PN_QID_BYTES + PN_ID_BYTES + U8_LEN + U16_LEN) /* addr not counted */
#define QUERY_KIND_KEYWORDS 1
#define QUERY_KIND_CID 2

/* Largest body of each type. */
#define ERROR_BODY_MAX (ERROR_HDR + PN_ERRMSG_MAX)
#define META_BODY_MAX (META_HDR + PN_NAME_MAX)
#define LIST_BODY_MAX (LIST_HDR + PN_LIST_MAX * LIST_ENTRY_MAX)
#define PUT_STATUS_BODY_MAX (PUT_STATUS_HDR + BITMAP_MAX)
#define BITFIELD_BODY_MAX (BITFIELD_HDR + BITMAP_MAX)
#define DIR_REGISTER_BODY_MAX (DIR_REGISTER_HDR + PN_DIR_ADDR_MAX)
#define DIR_OFFER_BODY_MAX (DIR_OFFER_HDR + PN_DIR_OFFER_MAX * LIST_ENTRY_MAX)
#define DIR_PROVIDERS_BODY_MAX (DIR_PROVIDERS_HDR + PN_DIR_RESULTS_MAX * DIR_PROVIDER_ENTRY_MAX)
#define DIR_SEARCH_BODY_MAX (DIR_SEARCH_HDR + PN_DIR_QUERY_MAX)
#define DIR_RESULTS_BODY_MAX (DIR_RESULTS_HDR + PN_DIR_RESULTS_MAX * DIR_RESULT_ENTRY_MAX)
#define PEERS_BODY_MAX (PEERS_HDR + PN_PEERS_MAX * DIR_PROVIDER_ENTRY_MAX)
#define QUERY_BODY_MAX (QUERY_HDR + PN_QUERY_DATA_MAX)
#define QUERY_HIT_ENTRIES_MAX (PN_HIT_RESULTS_MAX * LIST_ENTRY_MAX)
#define QUERY_HIT_BODY_MAX (QUERY_HIT_FIXED + PN_DIR_ADDR_MAX + QUERY_HIT_ENTRIES_MAX)

_Static_assert(REF_INDEX_BODY == PN_CHUNK_MSG_HDR, "CHUNK header layout");
_Static_assert(HASH_REQ_BODY == PN_HASHES_MSG_HDR, "HASHES header layout");
_Static_assert(PN_FRAME_MAX >= LIST_BODY_MAX && PN_FRAME_MAX >= PUT_STATUS_BODY_MAX,
	       "PN_FRAME_MAX covers every type");
_Static_assert(PN_FRAME_MAX >= BITFIELD_BODY_MAX && PN_FRAME_MAX >= DIR_OFFER_BODY_MAX &&
	       PN_FRAME_MAX >= DIR_PROVIDERS_BODY_MAX && PN_FRAME_MAX >= DIR_RESULTS_BODY_MAX &&
	       PN_FRAME_MAX >= DIR_REGISTER_BODY_MAX && PN_FRAME_MAX >= DIR_SEARCH_BODY_MAX,
	       "PN_FRAME_MAX covers every swarm and directory type");
/* A u8 addr_len / host_len must be able to say PN_DIR_ADDR_MAX. */
_Static_assert(PN_DIR_ADDR_MAX <= UINT8_MAX, "address length fits a u8");
_Static_assert(PN_DIR_OFFER_MAX <= UINT16_MAX && PN_DIR_RESULTS_MAX <= UINT16_MAX &&
	       PN_DIR_QUERY_MAX <= UINT16_MAX, "counts fit a u16");
_Static_assert(PN_FRAME_MAX >= PEERS_BODY_MAX && PN_FRAME_MAX >= QUERY_BODY_MAX &&
	       PN_FRAME_MAX >= QUERY_HIT_BODY_MAX, "PN_FRAME_MAX covers every flooding type");
_Static_assert(PN_PEERS_MAX <= UINT8_MAX && PN_HIT_RESULTS_MAX <= UINT16_MAX &&
	       PN_QUERY_DATA_MAX <= UINT16_MAX, "flooding counts fit their fields");
/* A keyword QUERY is checked as a DIR_SEARCH query, so it may not be longer. */
_Static_assert(PN_QUERY_DATA_MAX <= PN_DIR_QUERY_MAX, "QUERY text within the search-query limit");
_Static_assert(PN_CID_BYTES <= PN_QUERY_DATA_MAX, "a content-ID QUERY fits the data limit");

#define ASCII_GRAPH_LO 0x21u /* '!' */
#define ASCII_GRAPH_HI 0x7eu /* '~' */

size_t pn_msg_max_body(uint8_t type)
{
	switch (type) {
	case PN_MSG_HELLO: return HELLO_BODY;
	case PN_MSG_ERROR: return ERROR_BODY_MAX;
	case PN_MSG_PING:
	case PN_MSG_PONG: return PING_BODY;
	case PN_MSG_META_REQ:
	case PN_MSG_PUT_END:
	case PN_MSG_PUT_DONE: return REF_BODY;
	case PN_MSG_CHUNK_REQ:
	case PN_MSG_CANCEL: return REF_INDEX_BODY;
	case PN_MSG_META:
	case PN_MSG_PUT_BEGIN: return META_BODY_MAX;
	case PN_MSG_HASH_REQ: return HASH_REQ_BODY;
	case PN_MSG_HASHES: return PN_HASHES_BODY_MAX;
	case PN_MSG_CHUNK: return PN_CHUNK_BODY_MAX;
	case PN_MSG_LIST_REQ: return LIST_REQ_BODY;
	case PN_MSG_LIST: return LIST_BODY_MAX;
	case PN_MSG_PUT_STATUS: return PUT_STATUS_BODY_MAX;
	case PN_MSG_INTERESTED:
	case PN_MSG_NOT_INTERESTED: return CIDREF_BODY;
	case PN_MSG_BITFIELD: return BITFIELD_BODY_MAX;
	case PN_MSG_HAVE: return HAVE_BODY;
	case PN_MSG_CHOKE:
	case PN_MSG_UNCHOKE: return EMPTY_BODY;
	case PN_MSG_DIR_REGISTER: return DIR_REGISTER_BODY_MAX;
	case PN_MSG_DIR_OK: return DIR_OK_BODY;
	case PN_MSG_DIR_OFFER: return DIR_OFFER_BODY_MAX;
	case PN_MSG_DIR_WITHDRAW:
	case PN_MSG_DIR_FIND: return DIR_REF_BODY;
	case PN_MSG_DIR_PROVIDERS: return DIR_PROVIDERS_BODY_MAX;
	case PN_MSG_DIR_SEARCH: return DIR_SEARCH_BODY_MAX;
	case PN_MSG_DIR_RESULTS: return DIR_RESULTS_BODY_MAX;
	case PN_MSG_DIR_BYE: return DIR_BYE_BODY;
	case PN_MSG_PEERS_REQ: return EMPTY_BODY;
	case PN_MSG_PEERS: return PEERS_BODY_MAX;
	case PN_MSG_QUERY: return QUERY_BODY_MAX;
	case PN_MSG_QUERY_HIT: return QUERY_HIT_BODY_MAX;
	default: return 0;
	}
}

int pn_frame_check(const uint8_t *buf, size_t len, size_t max_body, size_t *body_len)
{
	struct pn_reader r;
	uint32_t declared;
	size_t type_max;

	pn_rd_init(&r, buf, len);
	declared = pn_rd_u32(&r);
	if (r.err)
		return PN_EAGAIN;
	if (declared == 0)
		return PN_EPROTO;
	if (declared > max_body)
		return PN_ETOOBIG;
	if (pn_rd_left(&r) >= TYPE_LEN) {
		type_max = pn_msg_max_body(pn_rd_u8(&r));
		if (type_max && declared > type_max)
			return PN_ETOOBIG;
	}
	if (len - PN_FRAME_HDR < declared)
		return PN_EAGAIN;
	*body_len = declared;
	return PN_OK;
}

/* ---- field checks shared by encoder and decoder ---- */

/* A DIR_SEARCH query: 1..PN_DIR_QUERY_MAX bytes of text as in a name, but
 * '/', '\\', "." and ".." are allowed (it is a phrase, not a label). */
static bool query_valid(const char *query, size_t len)
{
	return query && len >= 1 && len <= PN_DIR_QUERY_MAX && pn_text_valid(query, len, false);
}

bool pn_addr_text_valid(const char *s, size_t len, bool allow_empty)
{
	struct pn_reader r;

	if (len == 0)
		return allow_empty;
	if (!s || len > PN_DIR_ADDR_MAX)
		return false;

	pn_rd_init(&r, s, len);
	while (pn_rd_left(&r)) {
		uint8_t b = pn_rd_u8(&r);
		if (b < ASCII_GRAPH_LO || b > ASCII_GRAPH_HI)
			return false;
	}
	return true;
}

bool pn_addr_valid(const char *s)
{
	return s && pn_addr_text_valid(s, strnlen(s, PN_ADDR_MAX + 1), false);
}

static bool cid_valid(const struct pn_cid *cid)
{
	return cid->size <= PN_MAX_FILE_SIZE;
}

/* first..first+count is a non-empty page of at most PN_HASHES_MAX chunks of cid. */
static bool hash_range_valid(const struct pn_cid *cid, uint32_t first, uint32_t count)
{
	uint32_t n = pn_cid_chunks(cid);

	return cid_valid(cid) && count >= 1 && count <= PN_HASHES_MAX &&
	       first < n && count <= n - first;
}

static size_t bitmap_len(uint32_t nchunks)
{
	return ((size_t)nchunks + BITS_PER_BYTE - 1) / BITS_PER_BYTE;
}

static bool validate_hello(const struct pn_msg_hello *m)
{
	return m->version >= 1 && m->role >= PN_ROLE_CLIENT && m->role <= PN_ROLE_DIRECTORY;
}

static bool validate_error(const struct pn_msg_error *m)
{
	return m->code != 0 && m->text_len <= PN_ERRMSG_MAX && (m->text || m->text_len == 0);
}

static bool validate_ref(const struct pn_msg_ref *m, bool has_index)
{
	if (!cid_valid(&m->cid))
		return false;
	return has_index ? m->index < pn_cid_chunks(&m->cid) : m->index == 0;
}

static bool validate_meta(const struct pn_msg_meta *m)
{
	return cid_valid(&m->cid) && pn_name_valid(m->name, m->name_len);
}

static bool validate_hashes(const struct pn_msg_hashes *m)
{
	return hash_range_valid(&m->cid, m->first, m->count) && m->hashes;
}

static bool validate_chunk(const struct pn_msg_chunk *m)
{
	return cid_valid(&m->cid) && m->index < pn_cid_chunks(&m->cid) &&
	       m->len == pn_cid_chunk_len(&m->cid, m->index) && (m->data || m->len == 0);
}

/* Every entry parses, there are exactly `count` of them, and they fill entries_len. */
static bool validate_list(const struct pn_msg_list *m)
{
	struct pn_list_entry e;
	size_t off = 0;

	if (m->count > PN_LIST_MAX || m->entries_len > LIST_BODY_MAX - LIST_HDR)
		return false;
	if (m->entries_len && !m->entries)
		return false;
	for (uint16_t i = 0; i < m->count; i++)
		if (pn_list_next(m, &off, &e) != PN_OK)
			return false;
	return off == m->entries_len;
}

/* PUT_STATUS and BITFIELD: nchunks == chunks(cid), and the unused low bits
 * of the bitmap's last byte are zero. */
static bool bitmap_valid(const struct pn_cid *cid, uint32_t nchunks, const uint8_t *bitmap)
{
	size_t nbytes;

	if (!cid_valid(cid) || nchunks != pn_cid_chunks(cid) || !bitmap)
		return false;
	nbytes = bitmap_len(nchunks);
	if (nchunks % BITS_PER_BYTE) {
		uint8_t unused = (uint8_t)(0xffu >> (nchunks % BITS_PER_BYTE));
		if (bitmap[nbytes - 1] & unused)
			return false;
	}
	return true;
}

static bool validate_put_status(const struct pn_msg_put_status *m)
{
	if ((m->flags & ~PN_PUT_HAVE_HASHES) != 0)
		return false;
	return bitmap_valid(&m->cid, m->nchunks, m->bitmap);
}

/* INTERESTED, NOT_INTERESTED (index not on the wire, must be 0) and HAVE. */
static bool validate_cidref(const struct pn_msg_cidref *m, bool has_index)
{
	if (!cid_valid(&m->cid))
		return false;
	return has_index ? m->index < pn_cid_chunks(&m->cid) : m->index == 0;
}

static bool validate_dir_register(const struct pn_msg_dir_register *m)
{
	return m->listen_port != 0 && pn_addr_text_valid(m->host, m->host_len, true);
}

static bool validate_dir_offer(const struct pn_msg_dir_offer *m)
{
	struct pn_list_entry e;
	size_t off = 0;

	if (m->count < 1 || m->count > PN_DIR_OFFER_MAX || m->entries_len > DIR_OFFER_BODY_MAX - DIR_OFFER_HDR)
		return false;
	if (m->entries_len && !m->entries)
		return false;
	for (uint16_t i = 0; i < m->count; i++)
		if (pn_dir_offer_next(m, &off, &e) != PN_OK)
			return false;
	return off == m->entries_len;
}

/* DIR_WITHDRAW, DIR_FIND carry a cid; DIR_BYE does not (it must be all zero). */
static bool validate_dir_ref(const struct pn_msg_dir_ref *m, bool has_cid)
{
	static const struct pn_cid zero;

	if (has_cid)
		return cid_valid(&m->cid);
	return m->cid.size == 0 && memcmp(m->cid.root, zero.root, PN_HASH_BYTES) == 0;
}

static bool validate_dir_providers(const struct pn_msg_dir_providers *m)
{
	struct pn_dir_provider_entry e;
	size_t off = 0;

	if (!cid_valid(&m->cid) || m->count > PN_DIR_RESULTS_MAX || m->count > m->total)
		return false;
	if (m->entries_len > DIR_PROVIDERS_BODY_MAX - DIR_PROVIDERS_HDR || (m->entries_len && !m->entries))
		return false;
	for (uint16_t i = 0; i < m->count; i++)
		if (pn_dir_provider_next(m, &off, &e) != PN_OK)
			return false;
	return off == m->entries_len;
}

static bool validate_dir_results(const struct pn_msg_dir_results *m)
{
	struct pn_dir_result_entry e;
	size_t off = 0;

	if (m->count > PN_DIR_RESULTS_MAX || m->entries_len > DIR_RESULTS_BODY_MAX - DIR_RESULTS_HDR)
		return false;
	if (m->entries_len && !m->entries)
		return false;
	for (uint16_t i = 0; i < m->count; i++)
		if (pn_dir_result_next(m, &off, &e) != PN_OK)
			return false;
	return off == m->entries_len;
}

static bool validate_peers(const struct pn_msg_peers *m)
{
	struct pn_dir_provider_entry e;
	size_t off = 0;

	if (m->count > PN_PEERS_MAX || m->entries_len > PEERS_BODY_MAX - PEERS_HDR)
		return false;
	if (m->entries_len && !m->entries)
		return false;
	for (uint8_t i = 0; i < m->count; i++)
		if (pn_peers_next(m, &off, &e) != PN_OK)
			return false;
	return off == m->entries_len;
}

/* kind 1: keywords, a DIR_SEARCH-style query of 1..PN_QUERY_DATA_MAX bytes;
 * kind 2: exactly one content ID in wire form. ttl and hops take any value
 * (receivers clamp them); qid is any 16 bytes. */
static bool validate_query(const struct pn_msg_query *m)
{
	struct pn_reader r;
	struct pn_cid cid;

	if (!m->data)
		return false;
	switch (m->kind) {
	case QUERY_KIND_KEYWORDS:
		return m->len <= PN_QUERY_DATA_MAX && query_valid((const char *)m->data, m->len);
	case QUERY_KIND_CID:
		if (m->len != PN_CID_BYTES)
			return false;
		pn_rd_init(&r, m->data, m->len);
		pn_cid_read(&r, &cid);
		return r.err == 0 && pn_rd_left(&r) == 0;
	default:
		return false;
	}
}

static bool validate_query_hit(const struct pn_msg_query_hit *m)
{
	struct pn_list_entry e;
	size_t off = 0;

	if (!m->node_id || !pn_addr_text_valid(m->addr, m->addr_len, false))
		return false;
	if (m->count < 1 || m->count > PN_HIT_RESULTS_MAX || m->entries_len > QUERY_HIT_ENTRIES_MAX)
		return false;
	if (!m->entries) /* count >= 1, so there are entry bytes */
		return false;
	for (uint16_t i = 0; i < m->count; i++)
		if (pn_hit_next(m, &off, &e) != PN_OK)
			return false;
	return off == m->entries_len;
}

static bool validate(const struct pn_msg *m)
{
	switch (m->type) {
	case PN_MSG_HELLO: return validate_hello(&m->u.hello);
	case PN_MSG_ERROR: return validate_error(&m->u.error);
	case PN_MSG_PING:
	case PN_MSG_PONG: return true;
	case PN_MSG_META_REQ:
	case PN_MSG_PUT_END:
	case PN_MSG_PUT_DONE: return validate_ref(&m->u.ref, false);
	case PN_MSG_CHUNK_REQ:
	case PN_MSG_CANCEL: return validate_ref(&m->u.ref, true);
	case PN_MSG_META:
	case PN_MSG_PUT_BEGIN: return validate_meta(&m->u.meta);
	case PN_MSG_HASH_REQ:
		return hash_range_valid(&m->u.hash_req.cid, m->u.hash_req.first, m->u.hash_req.count);
	case PN_MSG_HASHES: return validate_hashes(&m->u.hashes);
	case PN_MSG_CHUNK: return validate_chunk(&m->u.chunk);
	case PN_MSG_LIST_REQ: return true;
	case PN_MSG_LIST: return validate_list(&m->u.list);
	case PN_MSG_PUT_STATUS: return validate_put_status(&m->u.put_status);
	case PN_MSG_INTERESTED:
	case PN_MSG_NOT_INTERESTED: return validate_cidref(&m->u.cidref, false);
	case PN_MSG_HAVE: return validate_cidref(&m->u.cidref, true);
	case PN_MSG_BITFIELD:
		return bitmap_valid(&m->u.bitfield.cid, m->u.bitfield.nchunks, m->u.bitfield.bitmap);
	case PN_MSG_CHOKE:
	case PN_MSG_UNCHOKE: return true;
	case PN_MSG_DIR_REGISTER: return validate_dir_register(&m->u.dir_register);
	case PN_MSG_DIR_OK: return true;
	case PN_MSG_DIR_OFFER: return validate_dir_offer(&m->u.dir_offer);
	case PN_MSG_DIR_WITHDRAW:
	case PN_MSG_DIR_FIND: return validate_dir_ref(&m->u.dir_ref, true);
	case PN_MSG_DIR_BYE: return validate_dir_ref(&m->u.dir_ref, false);
	case PN_MSG_DIR_PROVIDERS: return validate_dir_providers(&m->u.dir_providers);
	case PN_MSG_DIR_SEARCH: return query_valid(m->u.dir_search.query, m->u.dir_search.query_len);
	case PN_MSG_DIR_RESULTS: return validate_dir_results(&m->u.dir_results);
	case PN_MSG_PEERS_REQ: return true;
	case PN_MSG_PEERS: return validate_peers(&m->u.peers);
	case PN_MSG_QUERY: return validate_query(&m->u.query);
	case PN_MSG_QUERY_HIT: return validate_query_hit(&m->u.query_hit);
	default: return false;
	}
}

/* ---- content IDs and list entries ---- */

void pn_cid_write(struct pn_writer *w, const struct pn_cid *cid)
{
	pn_wr_bytes(w, cid->root, PN_HASH_BYTES);
	pn_wr_u64(w, cid->size);
}

void pn_cid_read(struct pn_reader *r, struct pn_cid *cid)
{
	pn_rd_bytes(r, cid->root, PN_HASH_BYTES);
	cid->size = pn_rd_u64(r);
	if (cid->size > PN_MAX_FILE_SIZE)
		pn_rd_fail(r, PN_EPROTO);
}

/* Starts reading the entry at *off of entries[0..len). Returns PN_OK with r
 * positioned there, PN_EAGAIN at the end, PN_EPROTO past it. */
static int entry_start(struct pn_reader *r, const uint8_t *entries, size_t len, size_t off)
{
	if (off == len)
		return PN_EAGAIN;
	if (off > len)
		return PN_EPROTO;
	pn_rd_init(r, entries, len);
	(void)pn_rd_ptr(r, off); /* skip what was already iterated */
	return PN_OK;
}

/* One LIST / DIR_OFFER entry: cid, u16 name_len, name. */
static int list_entry_next(const uint8_t *entries, size_t len, size_t *off, struct pn_list_entry *e)
{
	struct pn_reader r;
	int err = entry_start(&r, entries, len, *off);

	if (err)
		return err;
	pn_cid_read(&r, &e->cid);
	e->name_len = pn_rd_u16(&r);
	e->name = (const char *)pn_rd_ptr(&r, e->name_len);
	if (r.err || !pn_name_valid(e->name, e->name_len))
		return PN_EPROTO;
	*off = r.off;
	return PN_OK;
}

int pn_list_next(const struct pn_msg_list *l, size_t *off, struct pn_list_entry *e)
{
	return list_entry_next(l->entries, l->entries_len, off, e);
}

int pn_dir_offer_next(const struct pn_msg_dir_offer *m, size_t *off, struct pn_list_entry *e)
{
	return list_entry_next(m->entries, m->entries_len, off, e);
}

int pn_hit_next(const struct pn_msg_query_hit *m, size_t *off, struct pn_list_entry *e)
{
	return list_entry_next(m->entries, m->entries_len, off, e);
}

/* One DIR_PROVIDERS / PEERS entry: node_id[32], u8 addr_len, addr (not empty). */
static int provider_entry_next(const uint8_t *entries, size_t len, size_t *off, struct pn_dir_provider_entry *e)
{
	struct pn_reader r;
	int err = entry_start(&r, entries, len, *off);

	if (err)
		return err;
	e->node_id = pn_rd_ptr(&r, PN_ID_BYTES);
	e->addr_len = pn_rd_u8(&r);
	e->addr = (const char *)pn_rd_ptr(&r, e->addr_len);
	if (r.err || !pn_addr_text_valid(e->addr, e->addr_len, false))
		return PN_EPROTO;
	*off = r.off;
	return PN_OK;
}

int pn_dir_provider_next(const struct pn_msg_dir_providers *m, size_t *off, struct pn_dir_provider_entry *e)
{
	return provider_entry_next(m->entries, m->entries_len, off, e);
}

int pn_peers_next(const struct pn_msg_peers *m, size_t *off, struct pn_dir_provider_entry *e)
{
	return provider_entry_next(m->entries, m->entries_len, off, e);
}

int pn_dir_result_next(const struct pn_msg_dir_results *m, size_t *off, struct pn_dir_result_entry *e)
{
	struct pn_reader r;
	int err = entry_start(&r, m->entries, m->entries_len, *off);

	if (err)
		return err;
	pn_cid_read(&r, &e->cid);
	e->providers = pn_rd_u32(&r);
	e->name_len = pn_rd_u16(&r);
	e->name = (const char *)pn_rd_ptr(&r, e->name_len);
	if (r.err || !pn_name_valid(e->name, e->name_len))
		return PN_EPROTO;
	*off = r.off;
	return PN_OK;
}

/* Marks w as given an invalid entry (first error wins). */
static void entry_reject(struct pn_writer *w)
{
	if (!w->err)
		w->err = PN_EINVAL;
}

void pn_list_entry_encode(struct pn_writer *w, const struct pn_list_entry *e)
{
	if (!cid_valid(&e->cid) || !pn_name_valid(e->name, e->name_len)) {
		entry_reject(w);
		return;
	}
	pn_cid_write(w, &e->cid);
	pn_wr_u16(w, e->name_len);
	pn_wr_bytes(w, e->name, e->name_len);
}

void pn_dir_provider_encode(struct pn_writer *w, const struct pn_dir_provider_entry *e)
{
	if (!e->node_id || !pn_addr_text_valid(e->addr, e->addr_len, false)) {
		entry_reject(w);
		return;
	}
	pn_wr_bytes(w, e->node_id, PN_ID_BYTES);
	pn_wr_u8(w, e->addr_len);
	pn_wr_bytes(w, e->addr, e->addr_len);
}

void pn_dir_result_encode(struct pn_writer *w, const struct pn_dir_result_entry *e)
{
	if (!cid_valid(&e->cid) || !pn_name_valid(e->name, e->name_len)) {
		entry_reject(w);
		return;
	}
	pn_cid_write(w, &e->cid);
	pn_wr_u32(w, e->providers);
	pn_wr_u16(w, e->name_len);
	pn_wr_bytes(w, e->name, e->name_len);
}

/* ---- decode ---- */

static void read_hello(struct pn_reader *r, struct pn_msg_hello *m)
{
	m->version = pn_rd_u8(r);
	m->role = pn_rd_u8(r);
	m->listen_port = pn_rd_u16(r);
	m->features = pn_rd_u32(r);
}

static void read_error(struct pn_reader *r, struct pn_msg_error *m)
{
	m->req_id = pn_rd_u32(r);
	m->code = pn_rd_u16(r);
	m->text_len = pn_rd_u16(r);
	m->text = (const char *)pn_rd_ptr(r, m->text_len);
}

static void read_ref(struct pn_reader *r, struct pn_msg_ref *m, bool has_index)
{
	m->req_id = pn_rd_u32(r);
	pn_cid_read(r, &m->cid);
	m->index = has_index ? pn_rd_u32(r) : 0;
}

static void read_meta(struct pn_reader *r, struct pn_msg_meta *m)
{
	m->req_id = pn_rd_u32(r);
	pn_cid_read(r, &m->cid);
	m->name_len = pn_rd_u16(r);
	m->name = (const char *)pn_rd_ptr(r, m->name_len);
}

static void read_hash_req(struct pn_reader *r, struct pn_msg_hash_req *m)
{
	m->req_id = pn_rd_u32(r);
	pn_cid_read(r, &m->cid);
	m->first = pn_rd_u32(r);
	m->count = pn_rd_u32(r);
}

static void read_hashes(struct pn_reader *r, struct pn_msg_hashes *m)
{
	m->req_id = pn_rd_u32(r);
	pn_cid_read(r, &m->cid);
	m->first = pn_rd_u32(r);
	m->count = pn_rd_u32(r);
	if (m->count > PN_HASHES_MAX)
		pn_rd_fail(r, PN_EPROTO);
	m->hashes = pn_rd_ptr(r, (size_t)m->count * PN_HASH_BYTES);
}

static void read_chunk(struct pn_reader *r, struct pn_msg_chunk *m)
{
	size_t data_len;

	m->req_id = pn_rd_u32(r);
	pn_cid_read(r, &m->cid);
	m->index = pn_rd_u32(r);
	data_len = pn_rd_left(r); /* <= PN_CHUNK_SIZE: the body length was capped */
	m->len = (uint32_t)data_len;
	m->data = pn_rd_ptr(r, data_len);
}

static void read_list_req(struct pn_reader *r, struct pn_msg_list_req *m)
{
	m->req_id = pn_rd_u32(r);
	m->cursor = pn_rd_u32(r);
}

static void read_list(struct pn_reader *r, struct pn_msg_list *m)
{
	m->req_id = pn_rd_u32(r);
	m->next_cursor = pn_rd_u32(r);
	m->count = pn_rd_u16(r);
	m->entries_len = pn_rd_left(r);
	m->entries = pn_rd_ptr(r, m->entries_len);
}

static void read_put_status(struct pn_reader *r, struct pn_msg_put_status *m)
{
	m->req_id = pn_rd_u32(r);
	pn_cid_read(r, &m->cid);
	m->flags = pn_rd_u8(r);
	m->nchunks = pn_rd_u32(r);
	if (m->nchunks > PN_MAX_CHUNKS)
		pn_rd_fail(r, PN_EPROTO);
	m->bitmap = pn_rd_ptr(r, bitmap_len(m->nchunks));
}

static void read_cidref(struct pn_reader *r, struct pn_msg_cidref *m, bool has_index)
{
	pn_cid_read(r, &m->cid);
	m->index = has_index ? pn_rd_u32(r) : 0;
}

static void read_bitfield(struct pn_reader *r, struct pn_msg_bitfield *m)
{
	pn_cid_read(r, &m->cid);
	m->nchunks = pn_rd_u32(r);
	if (m->nchunks > PN_MAX_CHUNKS)
		pn_rd_fail(r, PN_EPROTO);
	m->bitmap = pn_rd_ptr(r, bitmap_len(m->nchunks));
}

static void read_dir_register(struct pn_reader *r, struct pn_msg_dir_register *m)
{
	m->req_id = pn_rd_u32(r);
	m->listen_port = pn_rd_u16(r);
	m->host_len = pn_rd_u8(r);
	m->host = (const char *)pn_rd_ptr(r, m->host_len);
}

static void read_dir_ok(struct pn_reader *r, struct pn_msg_dir_ok *m)
{
	m->req_id = pn_rd_u32(r);
	m->heartbeat_ms = pn_rd_u32(r);
}

static void read_dir_offer(struct pn_reader *r, struct pn_msg_dir_offer *m)
{
	m->req_id = pn_rd_u32(r);
	m->count = pn_rd_u16(r);
	m->entries_len = pn_rd_left(r);
	m->entries = pn_rd_ptr(r, m->entries_len);
}

static void read_dir_ref(struct pn_reader *r, struct pn_msg_dir_ref *m, bool has_cid)
{
	m->req_id = pn_rd_u32(r);
	if (has_cid)
		pn_cid_read(r, &m->cid);
}

static void read_dir_providers(struct pn_reader *r, struct pn_msg_dir_providers *m)
{
	m->req_id = pn_rd_u32(r);
	pn_cid_read(r, &m->cid);
	m->total = pn_rd_u32(r);
	m->count = pn_rd_u16(r);
	m->entries_len = pn_rd_left(r);
	m->entries = pn_rd_ptr(r, m->entries_len);
}

static void read_dir_search(struct pn_reader *r, struct pn_msg_dir_search *m)
{
	m->req_id = pn_rd_u32(r);
	m->query_len = pn_rd_u16(r);
	m->query = (const char *)pn_rd_ptr(r, m->query_len);
}

static void read_dir_results(struct pn_reader *r, struct pn_msg_dir_results *m)
{
	m->req_id = pn_rd_u32(r);
	m->count = pn_rd_u16(r);
	m->entries_len = pn_rd_left(r);
	m->entries = pn_rd_ptr(r, m->entries_len);
}

static void read_peers(struct pn_reader *r, struct pn_msg_peers *m)
{
	m->count = pn_rd_u8(r);
	m->entries_len = pn_rd_left(r);
	m->entries = pn_rd_ptr(r, m->entries_len);
}

static void read_query(struct pn_reader *r, struct pn_msg_query *m)
{
	pn_rd_bytes(r, m->qid, PN_QID_BYTES);
	m->ttl = pn_rd_u8(r);
	m->hops = pn_rd_u8(r);
	m->kind = pn_rd_u8(r);
	m->len = pn_rd_u16(r);
	m->data = pn_rd_ptr(r, m->len);
}

static void read_query_hit(struct pn_reader *r, struct pn_msg_query_hit *m)
{
	pn_rd_bytes(r, m->qid, PN_QID_BYTES);
	m->node_id = pn_rd_ptr(r, PN_ID_BYTES);
	m->addr_len = pn_rd_u8(r);
	m->addr = (const char *)pn_rd_ptr(r, m->addr_len);
	m->count = pn_rd_u16(r);
	m->entries_len = pn_rd_left(r);
	m->entries = pn_rd_ptr(r, m->entries_len);
}

int pn_msg_decode(const uint8_t *body, size_t len, struct pn_msg *out)
{
	struct pn_reader r;
	size_t max;

	memset(out, 0, sizeof(*out));
	pn_rd_init(&r, body, len);
	out->type = pn_rd_u8(&r);
	if (r.err)
		return PN_EPROTO;
	max = pn_msg_max_body(out->type);
	if (max == 0)
		return PN_EPROTO;
	if (len > max)
		return PN_ETOOBIG;

	switch (out->type) {
	case PN_MSG_HELLO: read_hello(&r, &out->u.hello); break;
	case PN_MSG_ERROR: read_error(&r, &out->u.error); break;
	case PN_MSG_PING:
	case PN_MSG_PONG: out->u.ping.nonce = pn_rd_u64(&r); break;
	case PN_MSG_META_REQ:
	case PN_MSG_PUT_END:
	case PN_MSG_PUT_DONE: read_ref(&r, &out->u.ref, false); break;
	case PN_MSG_CHUNK_REQ:
	case PN_MSG_CANCEL: read_ref(&r, &out->u.ref, true); break;
	case PN_MSG_META:
	case PN_MSG_PUT_BEGIN: read_meta(&r, &out->u.meta); break;
	case PN_MSG_HASH_REQ: read_hash_req(&r, &out->u.hash_req); break;
	case PN_MSG_HASHES: read_hashes(&r, &out->u.hashes); break;
	case PN_MSG_CHUNK: read_chunk(&r, &out->u.chunk); break;
	case PN_MSG_LIST_REQ: read_list_req(&r, &out->u.list_req); break;
	case PN_MSG_LIST: read_list(&r, &out->u.list); break;
	case PN_MSG_PUT_STATUS: read_put_status(&r, &out->u.put_status); break;
	case PN_MSG_INTERESTED:
	case PN_MSG_NOT_INTERESTED: read_cidref(&r, &out->u.cidref, false); break;
	case PN_MSG_HAVE: read_cidref(&r, &out->u.cidref, true); break;
	case PN_MSG_BITFIELD: read_bitfield(&r, &out->u.bitfield); break;
	case PN_MSG_CHOKE:
	case PN_MSG_UNCHOKE: break;
	case PN_MSG_DIR_REGISTER: read_dir_register(&r, &out->u.dir_register); break;
	case PN_MSG_DIR_OK: read_dir_ok(&r, &out->u.dir_ok); break;
	case PN_MSG_DIR_OFFER: read_dir_offer(&r, &out->u.dir_offer); break;
	case PN_MSG_DIR_WITHDRAW:
	case PN_MSG_DIR_FIND: read_dir_ref(&r, &out->u.dir_ref, true); break;
	case PN_MSG_DIR_BYE: read_dir_ref(&r, &out->u.dir_ref, false); break;
	case PN_MSG_DIR_PROVIDERS: read_dir_providers(&r, &out->u.dir_providers); break;
	case PN_MSG_DIR_SEARCH: read_dir_search(&r, &out->u.dir_search); break;
	case PN_MSG_DIR_RESULTS: read_dir_results(&r, &out->u.dir_results); break;
	case PN_MSG_PEERS_REQ: break;
	case PN_MSG_PEERS: read_peers(&r, &out->u.peers); break;
	case PN_MSG_QUERY: read_query(&r, &out->u.query); break;
	case PN_MSG_QUERY_HIT: read_query_hit(&r, &out->u.query_hit); break;
	}
	if (r.err || pn_rd_left(&r) != 0)
		return PN_EPROTO;
	return validate(out) ? PN_OK : PN_EPROTO;
}

/* ---- encode ---- */

static void write_body(const struct pn_msg *m, struct pn_writer *w)
{
	pn_wr_u8(w, m->type);
	switch (m->type) {
	case PN_MSG_HELLO:
		pn_wr_u8(w, m->u.hello.version);
		pn_wr_u8(w, m->u.hello.role);
		pn_wr_u16(w, m->u.hello.listen_port);
		pn_wr_u32(w, m->u.hello.features);
		break;
	case PN_MSG_ERROR:
		pn_wr_u32(w, m->u.error.req_id);
		pn_wr_u16(w, m->u.error.code);
		pn_wr_u16(w, m->u.error.text_len);
		pn_wr_bytes(w, m->u.error.text, m->u.error.text_len);
		break;
	case PN_MSG_PING:
	case PN_MSG_PONG:
		pn_wr_u64(w, m->u.ping.nonce);
		break;
	case PN_MSG_META_REQ:
	case PN_MSG_PUT_END:
	case PN_MSG_PUT_DONE:
	case PN_MSG_CHUNK_REQ:
	case PN_MSG_CANCEL:
		pn_wr_u32(w, m->u.ref.req_id);
		pn_cid_write(w, &m->u.ref.cid);
		if (m->type == PN_MSG_CHUNK_REQ || m->type == PN_MSG_CANCEL)
			pn_wr_u32(w, m->u.ref.index);
		break;
	case PN_MSG_META:
	case PN_MSG_PUT_BEGIN:
		pn_wr_u32(w, m->u.meta.req_id);
		pn_cid_write(w, &m->u.meta.cid);
		pn_wr_u16(w, m->u.meta.name_len);
		pn_wr_bytes(w, m->u.meta.name, m->u.meta.name_len);
		break;
	case PN_MSG_HASH_REQ:
		pn_wr_u32(w, m->u.hash_req.req_id);
		pn_cid_write(w, &m->u.hash_req.cid);
		pn_wr_u32(w, m->u.hash_req.first);
		pn_wr_u32(w, m->u.hash_req.count);
		break;
	case PN_MSG_HASHES:
		pn_wr_u32(w, m->u.hashes.req_id);
		pn_cid_write(w, &m->u.hashes.cid);
		pn_wr_u32(w, m->u.hashes.first);
		pn_wr_u32(w, m->u.hashes.count);
		pn_wr_bytes(w, m->u.hashes.hashes, (size_t)m->u.hashes.count * PN_HASH_BYTES);
		break;
	case PN_MSG_CHUNK:
		pn_wr_u32(w, m->u.chunk.req_id);
		pn_cid_write(w, &m->u.chunk.cid);
		pn_wr_u32(w, m->u.chunk.index);
		pn_wr_bytes(w, m->u.chunk.data, m->u.chunk.len);
		break;
	case PN_MSG_LIST_REQ:
		pn_wr_u32(w, m->u.list_req.req_id);
		pn_wr_u32(w, m->u.list_req.cursor);
		break;
	case PN_MSG_LIST:
		pn_wr_u32(w, m->u.list.req_id);
		pn_wr_u32(w, m->u.list.next_cursor);
		pn_wr_u16(w, m->u.list.count);
		pn_wr_bytes(w, m->u.list.entries, m->u.list.entries_len);
		break;
	case PN_MSG_PUT_STATUS:
		pn_wr_u32(w, m->u.put_status.req_id);
		pn_cid_write(w, &m->u.put_status.cid);
		pn_wr_u8(w, m->u.put_status.flags);
		pn_wr_u32(w, m->u.put_status.nchunks);
		pn_wr_bytes(w, m->u.put_status.bitmap, bitmap_len(m->u.put_status.nchunks));
		break;
	case PN_MSG_INTERESTED:
	case PN_MSG_NOT_INTERESTED:
	case PN_MSG_HAVE:
		pn_cid_write(w, &m->u.cidref.cid);
		if (m->type == PN_MSG_HAVE)
			pn_wr_u32(w, m->u.cidref.index);
		break;
	case PN_MSG_BITFIELD:
		pn_cid_write(w, &m->u.bitfield.cid);
		pn_wr_u32(w, m->u.bitfield.nchunks);
		pn_wr_bytes(w, m->u.bitfield.bitmap, bitmap_len(m->u.bitfield.nchunks));
		break;
	case PN_MSG_CHOKE:
	case PN_MSG_UNCHOKE:
		break;
	case PN_MSG_DIR_REGISTER:
		pn_wr_u32(w, m->u.dir_register.req_id);
		pn_wr_u16(w, m->u.dir_register.listen_port);
		pn_wr_u8(w, m->u.dir_register.host_len);
		pn_wr_bytes(w, m->u.dir_register.host, m->u.dir_register.host_len);
		break;
	case PN_MSG_DIR_OK:
		pn_wr_u32(w, m->u.dir_ok.req_id);
		pn_wr_u32(w, m->u.dir_ok.heartbeat_ms);
		break;
	case PN_MSG_DIR_OFFER:
		pn_wr_u32(w, m->u.dir_offer.req_id);
		pn_wr_u16(w, m->u.dir_offer.count);
		pn_wr_bytes(w, m->u.dir_offer.entries, m->u.dir_offer.entries_len);
		break;
	case PN_MSG_DIR_WITHDRAW:
	case PN_MSG_DIR_FIND:
	case PN_MSG_DIR_BYE:
		pn_wr_u32(w, m->u.dir_ref.req_id);
		if (m->type != PN_MSG_DIR_BYE)
			pn_cid_write(w, &m->u.dir_ref.cid);
		break;
	case PN_MSG_DIR_PROVIDERS:
		pn_wr_u32(w, m->u.dir_providers.req_id);
		pn_cid_write(w, &m->u.dir_providers.cid);
		pn_wr_u32(w, m->u.dir_providers.total);
		pn_wr_u16(w, m->u.dir_providers.count);
		pn_wr_bytes(w, m->u.dir_providers.entries, m->u.dir_providers.entries_len);
		break;
	case PN_MSG_DIR_SEARCH:
		pn_wr_u32(w, m->u.dir_search.req_id);
		pn_wr_u16(w, m->u.dir_search.query_len);
		pn_wr_bytes(w, m->u.dir_search.query, m->u.dir_search.query_len);
		break;
	case PN_MSG_DIR_RESULTS:
		pn_wr_u32(w, m->u.dir_results.req_id);
		pn_wr_u16(w, m->u.dir_results.count);
		pn_wr_bytes(w, m->u.dir_results.entries, m->u.dir_results.entries_len);
		break;
	case PN_MSG_PEERS_REQ:
		break;
	case PN_MSG_PEERS:
		pn_wr_u8(w, m->u.peers.count);
		pn_wr_bytes(w, m->u.peers.entries, m->u.peers.entries_len);
		break;
	case PN_MSG_QUERY:
		pn_wr_bytes(w, m->u.query.qid, PN_QID_BYTES);
		pn_wr_u8(w, m->u.query.ttl);
		pn_wr_u8(w, m->u.query.hops);
		pn_wr_u8(w, m->u.query.kind);
		pn_wr_u16(w, m->u.query.len);
		pn_wr_bytes(w, m->u.query.data, m->u.query.len);
		break;
	case PN_MSG_QUERY_HIT:
		pn_wr_bytes(w, m->u.query_hit.qid, PN_QID_BYTES);
		pn_wr_bytes(w, m->u.query_hit.node_id, PN_ID_BYTES);
		pn_wr_u8(w, m->u.query_hit.addr_len);
		pn_wr_bytes(w, m->u.query_hit.addr, m->u.query_hit.addr_len);
		pn_wr_u16(w, m->u.query_hit.count);
		pn_wr_bytes(w, m->u.query_hit.entries, m->u.query_hit.entries_len);
		break;
	}
}

int pn_msg_encode(const struct pn_msg *m, struct pn_writer *w)
{
	uint8_t *len_field;
	size_t start;

	if (!validate(m))
		return PN_EINVAL;
	if (w->err)
		return PN_ETOOBIG;
	len_field = pn_wr_reserve(w, PN_FRAME_HDR);
	start = w->len;
	write_body(m, w);
	if (w->err)
		return PN_ETOOBIG;
	/* validate() bounds every variable part, so this cannot trigger. */
	if (w->len - start > pn_msg_max_body(m->type))
		return PN_EINVAL;
	pn_put_u32(len_field, (uint32_t)(w->len - start));
	return PN_OK;
}

void pn_chunk_hdr_encode(uint8_t hdr[PN_FRAME_HDR + PN_CHUNK_MSG_HDR], uint32_t req_id,
			 const struct pn_cid *cid, uint32_t index, uint32_t len)
{
	struct pn_writer w;

	pn_wr_init(&w, hdr, PN_FRAME_HDR + PN_CHUNK_MSG_HDR);
	pn_wr_u32(&w, PN_CHUNK_MSG_HDR + len);
	pn_wr_u8(&w, PN_MSG_CHUNK);
	pn_wr_u32(&w, req_id);
	pn_cid_write(&w, cid);
	pn_wr_u32(&w, index);
}

/* The DHT's datagrams: encode and decode (docs/PROTOCOL.md, "DHT datagrams").
 *
 * As in wire.c, decoding is two steps: the layout is read through a struct
 * pn_reader (which catches truncation), then the fields are checked by the
 * same *_valid() functions that pn_dht_encode() runs before writing, so the
 * encoder and the decoder cannot disagree about what is valid.
 */
#include <string.h>
#include "util/text.h"
#include "wire/dht_wire.h"

#define U8_LEN 1
#define U16_LEN 2
#define U32_LEN 4
#define FAMILY_V4 4
#define FAMILY_V6 6
#define IPV4_BYTES 4
#define IPV6_BYTES 16
#define ADDR_V4_LEN (U8_LEN + IPV4_BYTES + U16_LEN)
#define ADDR_V6_LEN (U8_LEN + IPV6_BYTES + U16_LEN)
/* A record without name and address: kind, cid, name_len, publisher, sig. */
#define RECORD_FIXED (U8_LEN + PN_CID_BYTES + U8_LEN + PN_DHT_PUB_BYTES + PN_DHT_SIG_BYTES)
/* Header and signature around every body. */
#define DGRAM_FIXED (PN_DHT_HDR_BYTES + PN_DHT_SIG_BYTES)
/* Fixed parts of the NODES and VALUES bodies (the counts, the token). */
#define NODES_FIXED U8_LEN
#define VALUES_FIXED (PN_DHT_TOKEN_BYTES + U8_LEN + U8_LEN)

#define SIGNED_TAG "peernet-dht-record-1"
#define SIGNED_TAG_LEN 20

_Static_assert(sizeof(SIGNED_TAG) - 1 == SIGNED_TAG_LEN, "record signature tag length");
_Static_assert(PN_DHT_HDR_BYTES == 40, "header layout");
_Static_assert(PN_DHT_NODES_MAX <= UINT8_MAX && PN_DHT_RECORDS_MAX <= UINT8_MAX, "counts fit a u8");
_Static_assert(PN_DHT_NAME_MAX <= UINT8_MAX && PN_DHT_NAME_MAX <= PN_NAME_MAX, "name length fits a u8");
/* The largest fixed-size bodies fit with room to spare; NODES and VALUES are
 * trimmed by the encoder. The largest STORE (a 255-byte name) must fit. */
_Static_assert(DGRAM_FIXED + PN_DHT_TOKEN_BYTES + PN_DHT_KEY_BYTES + RECORD_FIXED + PN_DHT_NAME_MAX <=
	       PN_DHT_DGRAM_MAX, "the largest STORE fits one datagram");
_Static_assert(DGRAM_FIXED + NODES_FIXED + PN_DHT_NODES_MAX * (PN_DHT_KEY_BYTES + ADDR_V6_LEN) <=
	       PN_DHT_DGRAM_MAX, "a full NODES of IPv6 contacts fits one datagram");

/* ---- field checks shared by encoder and decoder ---- */

bool pn_dht_addr_valid(const struct pn_dht_addr *a)
{
	return (a->family == FAMILY_V4 || a->family == FAMILY_V6) && a->port != 0;
}

static bool type_valid(uint8_t type)
{
	return type >= PN_DHT_PING && type <= PN_DHT_STORED;
}

static bool kind_valid(uint8_t kind)
{
	return kind == PN_DHT_REC_PROVIDER || kind == PN_DHT_REC_KEYWORD;
}

static bool status_valid(uint8_t status)
{
	return status <= PN_DHT_STORE_INVALID;
}

/* A record's own fields (not its signature, which this layer does not check;
 * not its address, which only VALUES carries). */
static bool record_valid(const struct pn_dht_record *r)
{
	switch (r->kind) {
	case PN_DHT_REC_PROVIDER:
		return r->name_len == 0;
	case PN_DHT_REC_KEYWORD:
		return r->name_len >= 1 && r->name && pn_name_valid(r->name, r->name_len);
	default:
		return false;
	}
}

/* ---- lengths ---- */

size_t pn_dht_addr_wire_len(const struct pn_dht_addr *a)
{
	switch (a->family) {
	case FAMILY_V4: return ADDR_V4_LEN;
	case FAMILY_V6: return ADDR_V6_LEN;
	default: return 0;
	}
}

size_t pn_dht_contact_wire_len(const struct pn_dht_contact *c)
{
	return PN_DHT_KEY_BYTES + pn_dht_addr_wire_len(&c->addr);
}

size_t pn_dht_record_wire_len(const struct pn_dht_record *r, bool with_addr)
{
	return RECORD_FIXED + r->name_len + (with_addr ? pn_dht_addr_wire_len(&r->addr) : 0);
}

size_t pn_dht_record_signed_bytes(const struct pn_dht_record *r, const uint8_t key[PN_DHT_KEY_BYTES],
				  uint8_t out[PN_DHT_SIGNED_MAX])
{
	struct pn_writer w;

	pn_wr_init(&w, out, PN_DHT_SIGNED_MAX);
	pn_wr_bytes(&w, SIGNED_TAG, SIGNED_TAG_LEN);
	pn_wr_u8(&w, r->kind);
	pn_wr_bytes(&w, key, PN_DHT_KEY_BYTES);
	pn_wr_bytes(&w, r->cid, PN_CID_BYTES);
	pn_wr_u8(&w, r->name_len);
	if (r->name_len && r->name)
		pn_wr_bytes(&w, r->name, r->name_len);
	return w.len; /* never overflows: name_len is a u8 and PN_DHT_NAME_MAX is 255 */
}

/* ---- decode ---- */

static void read_addr(struct pn_reader *r, struct pn_dht_addr *a)
{
	memset(a, 0, sizeof(*a));
	a->family = pn_rd_u8(r);
	switch (a->family) {
	case FAMILY_V4:
		pn_rd_bytes(r, a->ip, IPV4_BYTES);
		break;
	case FAMILY_V6:
		pn_rd_bytes(r, a->ip, IPV6_BYTES);
		break;
	default:
		pn_rd_fail(r, PN_EPROTO);
		return;
	}
	a->port = pn_rd_u16(r);
	if (!pn_dht_addr_valid(a))
		pn_rd_fail(r, PN_EPROTO);
}

static void read_contact(struct pn_reader *r, struct pn_dht_contact *c)
{
	pn_rd_bytes(r, c->id, PN_DHT_KEY_BYTES);
	read_addr(r, &c->addr);
}

static void read_record(struct pn_reader *r, struct pn_dht_record *rec, bool with_addr)
{
	rec->kind = pn_rd_u8(r);
	pn_rd_bytes(r, rec->cid, PN_CID_BYTES);
	rec->name_len = pn_rd_u8(r);
	rec->name = rec->name_len ? (const char *)pn_rd_ptr(r, rec->name_len) : NULL;
	pn_rd_bytes(r, rec->publisher, PN_DHT_PUB_BYTES);
	pn_rd_bytes(r, rec->sig, PN_DHT_SIG_BYTES);
	if (with_addr)
		read_addr(r, &rec->addr);
	if (!r->err && !record_valid(rec))
		pn_rd_fail(r, PN_EPROTO);
}

static void read_body(struct pn_reader *r, struct pn_dht_msg *m)
{
	switch (m->type) {
	case PN_DHT_PING:
		break;
	case PN_DHT_PONG:
		read_addr(r, &m->u.pong);
		break;
	case PN_DHT_FIND_NODE:
		pn_rd_bytes(r, m->u.target, PN_DHT_KEY_BYTES);
		break;
	case PN_DHT_FIND_VALUE:
		m->u.find_value.kind = pn_rd_u8(r);
		pn_rd_bytes(r, m->u.find_value.key, PN_DHT_KEY_BYTES);
		if (!kind_valid(m->u.find_value.kind))
			pn_rd_fail(r, PN_EPROTO);
		break;
	case PN_DHT_NODES:
	case PN_DHT_VALUES:
		if (m->type == PN_DHT_VALUES)
			pn_rd_bytes(r, m->u.nodes.token, PN_DHT_TOKEN_BYTES);
		m->u.nodes.n_nodes = pn_rd_u8(r);
		if (m->u.nodes.n_nodes > PN_DHT_NODES_MAX) {
			pn_rd_fail(r, PN_EPROTO);
			break;
		}
		for (size_t i = 0; i < m->u.nodes.n_nodes && !r->err; i++)
			read_contact(r, &m->u.nodes.nodes[i]);
		if (m->type == PN_DHT_NODES)
			break;
		m->u.nodes.n_records = pn_rd_u8(r);
		if (m->u.nodes.n_records > PN_DHT_RECORDS_MAX) {
			pn_rd_fail(r, PN_EPROTO);
			break;
		}
		for (size_t i = 0; i < m->u.nodes.n_records && !r->err; i++)
			read_record(r, &m->u.nodes.records[i], true);
		break;
	case PN_DHT_STORE:
		pn_rd_bytes(r, m->u.store.token, PN_DHT_TOKEN_BYTES);
		pn_rd_bytes(r, m->u.store.key, PN_DHT_KEY_BYTES);
		read_record(r, &m->u.store.record, false);
		break;
	case PN_DHT_STORED:
		m->u.stored = pn_rd_u8(r);
		if (!status_valid(m->u.stored))
			pn_rd_fail(r, PN_EPROTO);
		break;
	default:
		pn_rd_fail(r, PN_EPROTO);
		break;
	}
}

int pn_dht_decode(const uint8_t *dgram, size_t len, struct pn_dht_msg *out)
{
	struct pn_reader r;

	memset(out, 0, sizeof(*out));
	if (!dgram || len < DGRAM_FIXED || len > PN_DHT_DGRAM_MAX)
		return PN_EPROTO;
	/* The body ends where the signature begins: read only up to there. */
	pn_rd_init(&r, dgram, len - PN_DHT_SIG_BYTES);
	if (pn_rd_u8(&r) != PN_DHT_MAGIC0 || pn_rd_u8(&r) != PN_DHT_MAGIC1 || pn_rd_u8(&r) != PN_DHT_VERSION)
		return PN_EPROTO;
	out->type = pn_rd_u8(&r);
	if (!type_valid(out->type))
		return PN_EPROTO;
	out->txid = pn_rd_u32(&r);
	pn_rd_bytes(&r, out->sender_key, PN_DHT_PUB_BYTES);
	read_body(&r, out);
	if (r.err || pn_rd_left(&r) != 0) {
		memset(out, 0, sizeof(*out));
		return PN_EPROTO;
	}
	out->signed_len = len - PN_DHT_SIG_BYTES;
	out->sig = dgram + out->signed_len;
	return PN_OK;
}

/* ---- encode ---- */

static void write_addr(struct pn_writer *w, const struct pn_dht_addr *a)
{
	pn_wr_u8(w, a->family);
	pn_wr_bytes(w, a->ip, a->family == FAMILY_V4 ? IPV4_BYTES : IPV6_BYTES);
	pn_wr_u16(w, a->port);
}

static void write_contact(struct pn_writer *w, const struct pn_dht_contact *c)
{
	pn_wr_bytes(w, c->id, PN_DHT_KEY_BYTES);
	write_addr(w, &c->addr);
}

static void write_record(struct pn_writer *w, const struct pn_dht_record *rec, bool with_addr)
{
	pn_wr_u8(w, rec->kind);
	pn_wr_bytes(w, rec->cid, PN_CID_BYTES);
	pn_wr_u8(w, rec->name_len);
	if (rec->name_len)
		pn_wr_bytes(w, rec->name, rec->name_len);
	pn_wr_bytes(w, rec->publisher, PN_DHT_PUB_BYTES);
	pn_wr_bytes(w, rec->sig, PN_DHT_SIG_BYTES);
	if (with_addr)
		write_addr(w, &rec->addr);
}

/* Every field of m that pn_dht_decode would refuse, before a byte is written.
 * For NODES and VALUES every contact and record is checked, also those the
 * trimming may leave out. */
static bool msg_valid(const struct pn_dht_msg *m)
{
	switch (m->type) {
	case PN_DHT_PING:
		return true;
	case PN_DHT_PONG:
		return pn_dht_addr_valid(&m->u.pong);
	case PN_DHT_FIND_NODE:
		return true;
	case PN_DHT_FIND_VALUE:
		return kind_valid(m->u.find_value.kind);
	case PN_DHT_NODES:
	case PN_DHT_VALUES:
		if (m->u.nodes.n_nodes > PN_DHT_NODES_MAX)
			return false;
		for (size_t i = 0; i < m->u.nodes.n_nodes; i++)
			if (!pn_dht_addr_valid(&m->u.nodes.nodes[i].addr))
				return false;
		if (m->type == PN_DHT_NODES)
			return true;
		if (m->u.nodes.n_records > PN_DHT_RECORDS_MAX)
			return false;
		for (size_t i = 0; i < m->u.nodes.n_records; i++)
			if (!record_valid(&m->u.nodes.records[i]) ||
			    !pn_dht_addr_valid(&m->u.nodes.records[i].addr))
				return false;
		return true;
	case PN_DHT_STORE:
		return record_valid(&m->u.store.record);
	case PN_DHT_STORED:
		return status_valid(m->u.stored);
	default:
		return false;
	}
}

/* NODES and VALUES: how many records, then how many contacts, go into the
 * `room` bytes the body may take. Records come first: they are what a value
 * look-up is for, and a full list of IPv6 contacts would otherwise leave no
 * room for a single one. Each list keeps its order; the first entry that
 * does not fit ends it. */
static void fit_entries(const struct pn_dht_msg *m, size_t room, size_t *n_nodes, size_t *n_records)
{
	size_t used = m->type == PN_DHT_VALUES ? VALUES_FIXED : NODES_FIXED;
	size_t nr = 0, nn = 0;

	if (m->type == PN_DHT_VALUES) {
		while (nr < m->u.nodes.n_records) {
			size_t add = pn_dht_record_wire_len(&m->u.nodes.records[nr], true);
			if (used + add > room)
				break;
			used += add;
			nr++;
		}
	}
	while (nn < m->u.nodes.n_nodes) {
		size_t add = pn_dht_contact_wire_len(&m->u.nodes.nodes[nn]);
		if (used + add > room)
			break;
		used += add;
		nn++;
	}
	*n_nodes = nn;
	*n_records = nr;
}

int pn_dht_encode(const struct pn_dht_msg *m, uint8_t out[PN_DHT_DGRAM_MAX], size_t *len)
{
	struct pn_writer w;
	size_t n_nodes, n_records;

	*len = 0;
	if (!type_valid(m->type) || !msg_valid(m))
		return PN_EINVAL;
	pn_wr_init(&w, out, PN_DHT_DGRAM_MAX);
	pn_wr_u8(&w, PN_DHT_MAGIC0);
	pn_wr_u8(&w, PN_DHT_MAGIC1);
	pn_wr_u8(&w, PN_DHT_VERSION);
	pn_wr_u8(&w, m->type);
	pn_wr_u32(&w, m->txid);
	pn_wr_bytes(&w, m->sender_key, PN_DHT_PUB_BYTES);
	switch (m->type) {
	case PN_DHT_PING:
		break;
	case PN_DHT_PONG:
		write_addr(&w, &m->u.pong);
		break;
	case PN_DHT_FIND_NODE:
		pn_wr_bytes(&w, m->u.target, PN_DHT_KEY_BYTES);
		break;
	case PN_DHT_FIND_VALUE:
		pn_wr_u8(&w, m->u.find_value.kind);
		pn_wr_bytes(&w, m->u.find_value.key, PN_DHT_KEY_BYTES);
		break;
	case PN_DHT_NODES:
	case PN_DHT_VALUES:
		fit_entries(m, PN_DHT_DGRAM_MAX - DGRAM_FIXED, &n_nodes, &n_records);
		if (m->type == PN_DHT_VALUES)
			pn_wr_bytes(&w, m->u.nodes.token, PN_DHT_TOKEN_BYTES);
		pn_wr_u8(&w, (uint8_t)n_nodes);
		for (size_t i = 0; i < n_nodes; i++)
			write_contact(&w, &m->u.nodes.nodes[i]);
		if (m->type == PN_DHT_NODES)
			break;
		pn_wr_u8(&w, (uint8_t)n_records);
		for (size_t i = 0; i < n_records; i++)
			write_record(&w, &m->u.nodes.records[i], true);
		break;
	case PN_DHT_STORE:
		pn_wr_bytes(&w, m->u.store.token, PN_DHT_TOKEN_BYTES);
		pn_wr_bytes(&w, m->u.store.key, PN_DHT_KEY_BYTES);
		write_record(&w, &m->u.store.record, false);
		break;
	case PN_DHT_STORED:
		pn_wr_u8(&w, m->u.stored);
		break;
	}
	/* The signature's place, zeroed for the caller to fill. */
	uint8_t *sig = pn_wr_reserve(&w, PN_DHT_SIG_BYTES);
	if (w.err || !sig)
		return PN_EINVAL; /* cannot happen: every body fits (see the asserts above) */
	memset(sig, 0, PN_DHT_SIG_BYTES);
	*len = w.len;
	return PN_OK;
}

/* Unit tests for src/wire/dht_wire.c: the DHT's datagrams.
 *
 * The test vectors are whole datagrams, signed with RFC 8032's test 1 key
 * (dhtkey.h); they were written out from docs/PROTOCOL.md ("DHT datagrams")
 * and signed by Python's `cryptography`, not by this code, and the test
 * checks encode + sign against them byte for byte, and decode + verify the
 * other way. Every decode runs on a copy of its input that ends where a
 * PROT_NONE page begins (testutil.h). Each rejection is shown next to the
 * valid datagram it differs from, so that a test cannot pass by rejecting
 * everything.
 */
#include <stdio.h>
#include <string.h>
#include <criterion/criterion.h>
#include "crypto/crypto.h"
#include "util/buf.h"
#include "wire/dht_wire.h"
#include "dhtkey.h"
#include "testutil.h"

#define HEX_CAP 4096

#define PUB_HEX RFC8032_PUB_HEX
#define HDR(type, txid) "7044 01 " type " " txid " " PUB_HEX " "
#define KEY_CID2_HEX "fb887212931e8acd554aa040ab596eeae10a194b3b5a3c3df1315a0438b3667e"
#define KEY_REPORT_HEX "d7859a2836ff664da89393c461bad26ffce9ac83d80de30f3848f525cb0ab3c0"
#define A1_32_HEX "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1"
#define B2_32_HEX "b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2"
#define C3_32_HEX "c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3"
#define TOKEN_HEX "d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4d4"
#define CONTACT1_HEX B2_32_HEX " 04 0a000001 1b9f"                         /* 10.0.0.1:7071 */
#define CONTACT2_HEX C3_32_HEX " 06 00000000000000000000000000000001 1ba0" /* [::1]:7072 */
#define PROV_SIG_HEX "30c497d6be320dd3b04091b41f0818358fef2e554f3115a0b1775b13b2b84ea4" \
		     "76c71bda108405cf0c7473aafdc5adf34e643e7da36e17cc1b371b4df55a8908"
#define KW_SIG_HEX "e206bd6fd1f26d522dddbe1968dc7223c1bef7c74de86f535aae7a12ddfc40b6" \
		   "c0fafc5c48b532a61b0d24483cc3931dd9256b02fbe63da6445c92d7023b1701"
#define NAME_HEX "517561727465726c79207265706f72742e706466" /* "Quarterly report.pdf" */
#define PROV_REC_HEX "01 " CID2_HEX " 00 " PUB_HEX " " PROV_SIG_HEX
#define KW_REC_HEX "02 " CID2_HEX " 14 " NAME_HEX " " PUB_HEX " " KW_SIG_HEX

#define PING_SIG "b1fad4177211417efd5935d4609e242493332b125ac59d26df00317c9713d40afcf4b65831cf1e6ea93f99d68907f6f3adbf3ba31e13040cf20b94854252650f"
#define PONG_SIG "1d40b4a2595d701d4d9a75adc68165db6e3c0dfdbf1e4a90c2e00bdbf154f67c8a2831ffb942946ab82467dd2dbbcf73991f4fb4df20b25a9c18150f026b4d01"
#define FIND_NODE_SIG "2a30efed50bc0302559be20ed3f6f6a9f3ea26f3b1bbe4fedada262bc243c6d963ae3dc4868294b156f76b83a66f40ac80986cd5ea1f838003b108e17171e50b"
#define FIND_VALUE_SIG "fb03199e7176a257c57e59ba0393376597733c6b5d0c573a5c2da32e01e962aebb6c64ed269e22f0ccf59386540ed763e0c10a831c22166f97ec291fb1cef70f"
#define NODES_SIG "b8576c9ab0fd8f1323944876d8b9d6e372da3d431cc731db3c90b5711783db37f50dcd4dd17eb17d1f339ad1131654ed0b4384b4a096ebbe9539c11325d14802"
#define VALUES_SIG "409cfdf0d1a98f02251e95d58dbdd5bbceb4ecd0e20b1e1dadfde3b93850c7ed1bfeb8121737c585095c1da1f13abc32eac8d0745e39bbe0505e12b5c14a930a"
#define STORE_SIG "a39a8408c9606eb5b8c68e93e91b5017a30744554dac0f38746697cbb2d6acd8204ba24d7e2b07aebac1b629da4ad1fc8a561ad2500cb64caf9df1864e195408"
#define STORED_SIG "c7d6517a1c4b6b38c0bd6af001f2624fa0e546225a6ebfd5e84cdfaf00d2097e098268e272858937ff34e2c86ecd024151a1d47581e1a674310dae215ed3e505"

/* The vectors of docs/PROTOCOL.md, "DHT datagrams", in full. */
#define V_PING HDR("01", "00000001") PING_SIG
#define V_PONG HDR("02", "00000001") "04 7f000001 1b9e " PONG_SIG
#define V_FIND_NODE HDR("03", "00000002") A1_32_HEX " " FIND_NODE_SIG
#define V_FIND_VALUE HDR("05", "00000003") "01 " KEY_CID2_HEX " " FIND_VALUE_SIG
#define V_NODES HDR("04", "00000002") "02 " CONTACT1_HEX " " CONTACT2_HEX " " NODES_SIG
#define V_VALUES HDR("06", "00000003") TOKEN_HEX " 01 " CONTACT1_HEX " 01 " PROV_REC_HEX " 04 c0000201 1b9e " \
	VALUES_SIG
#define V_STORE HDR("07", "00000004") TOKEN_HEX " " KEY_REPORT_HEX " " KW_REC_HEX " " STORE_SIG
#define V_STORED HDR("08", "00000004") "00 " STORED_SIG

static const char kw_name[] = "Quarterly report.pdf";

/* ---- building messages ---- */

static struct pn_dht_addr addr4(uint8_t a, uint8_t b, uint8_t c, uint8_t d, uint16_t port)
{
	struct pn_dht_addr x = { .family = 4, .port = port };
	x.ip[0] = a; x.ip[1] = b; x.ip[2] = c; x.ip[3] = d;
	return x;
}

static struct pn_dht_addr addr6_loopback(uint16_t port)
{
	struct pn_dht_addr x = { .family = 6, .port = port };
	x.ip[15] = 1;
	return x;
}

static struct pn_dht_contact contact(uint8_t fill, struct pn_dht_addr a)
{
	struct pn_dht_contact c = { .addr = a };
	memset(c.id, fill, sizeof(c.id));
	return c;
}

static void cid2(uint8_t out[PN_CID_BYTES])
{
	unhex(CID2_HEX, out, PN_CID_BYTES);
}

static struct pn_dht_record provider_record(void)
{
	struct pn_dht_record r = { .kind = PN_DHT_REC_PROVIDER };
	cid2(r.cid);
	unhex(PUB_HEX, r.publisher, sizeof(r.publisher));
	unhex(PROV_SIG_HEX, r.sig, sizeof(r.sig));
	r.addr = addr4(192, 0, 2, 1, 7070);
	return r;
}

static struct pn_dht_record keyword_record(void)
{
	struct pn_dht_record r = { .kind = PN_DHT_REC_KEYWORD, .name = kw_name,
				   .name_len = (uint8_t)strlen(kw_name) };
	cid2(r.cid);
	unhex(PUB_HEX, r.publisher, sizeof(r.publisher));
	unhex(KW_SIG_HEX, r.sig, sizeof(r.sig));
	return r;
}

static struct pn_dht_msg base(uint8_t type, uint32_t txid)
{
	struct pn_dht_msg m;
	memset(&m, 0, sizeof(m));
	m.type = type;
	m.txid = txid;
	unhex(PUB_HEX, m.sender_key, sizeof(m.sender_key));
	return m;
}

/* ---- comparing ---- */

static bool bytes_eq(const void *a, const void *b, size_t n)
{
	return n == 0 || (a && b && memcmp(a, b, n) == 0);
}

static bool addr_eq(const struct pn_dht_addr *a, const struct pn_dht_addr *b)
{
	size_t n = a->family == 4 ? 4 : 16;
	return a->family == b->family && a->port == b->port && memcmp(a->ip, b->ip, n) == 0;
}

static bool record_eq(const struct pn_dht_record *a, const struct pn_dht_record *b, bool with_addr)
{
	return a->kind == b->kind && memcmp(a->cid, b->cid, PN_CID_BYTES) == 0 && a->name_len == b->name_len &&
	       bytes_eq(a->name, b->name, a->name_len) &&
	       memcmp(a->publisher, b->publisher, PN_DHT_PUB_BYTES) == 0 &&
	       memcmp(a->sig, b->sig, PN_DHT_SIG_BYTES) == 0 && (!with_addr || addr_eq(&a->addr, &b->addr));
}

/* Field-by-field equality; for NODES and VALUES b may carry a prefix of a's
 * lists (the encoder's trimming): n_nodes/n_records come from b. */
static bool msg_eq_prefix(const struct pn_dht_msg *a, const struct pn_dht_msg *b)
{
	if (a->type != b->type || a->txid != b->txid || memcmp(a->sender_key, b->sender_key, PN_DHT_PUB_BYTES))
		return false;
	switch (a->type) {
	case PN_DHT_PING:
		return true;
	case PN_DHT_PONG:
		return addr_eq(&a->u.pong, &b->u.pong);
	case PN_DHT_FIND_NODE:
		return memcmp(a->u.target, b->u.target, PN_DHT_KEY_BYTES) == 0;
	case PN_DHT_FIND_VALUE:
		return a->u.find_value.kind == b->u.find_value.kind &&
		       memcmp(a->u.find_value.key, b->u.find_value.key, PN_DHT_KEY_BYTES) == 0;
	case PN_DHT_NODES:
	case PN_DHT_VALUES:
		if (b->u.nodes.n_nodes > a->u.nodes.n_nodes)
			return false;
		for (size_t i = 0; i < b->u.nodes.n_nodes; i++)
			if (memcmp(a->u.nodes.nodes[i].id, b->u.nodes.nodes[i].id, PN_DHT_KEY_BYTES) ||
			    !addr_eq(&a->u.nodes.nodes[i].addr, &b->u.nodes.nodes[i].addr))
				return false;
		if (a->type == PN_DHT_NODES)
			return b->u.nodes.n_records == 0;
		if (memcmp(a->u.nodes.token, b->u.nodes.token, PN_DHT_TOKEN_BYTES) ||
		    b->u.nodes.n_records > a->u.nodes.n_records)
			return false;
		for (size_t i = 0; i < b->u.nodes.n_records; i++)
			if (!record_eq(&a->u.nodes.records[i], &b->u.nodes.records[i], true))
				return false;
		return true;
	case PN_DHT_STORE:
		return memcmp(a->u.store.token, b->u.store.token, PN_DHT_TOKEN_BYTES) == 0 &&
		       memcmp(a->u.store.key, b->u.store.key, PN_DHT_KEY_BYTES) == 0 &&
		       record_eq(&a->u.store.record, &b->u.store.record, false);
	case PN_DHT_STORED:
		return a->u.stored == b->u.stored;
	default:
		return false;
	}
}

static bool msg_eq(const struct pn_dht_msg *a, const struct pn_dht_msg *b)
{
	if (a->type == PN_DHT_NODES || a->type == PN_DHT_VALUES)
		if (a->u.nodes.n_nodes != b->u.nodes.n_nodes ||
		    (a->type == PN_DHT_VALUES && a->u.nodes.n_records != b->u.nodes.n_records))
			return false;
	return msg_eq_prefix(a, b);
}

/* ---- checks ---- */

static uint8_t out_buf[PN_DHT_DGRAM_MAX];

static size_t encode_ok(const struct pn_dht_msg *m)
{
	size_t len = 0;
	int err = pn_dht_encode(m, out_buf, &len);
	cr_assert_eq(err, PN_OK, "encode of type 0x%02x: %s", m->type, pn_strerror(err));
	cr_assert_geq(len, PN_DHT_HDR_BYTES + PN_DHT_SIG_BYTES);
	cr_assert_leq(len, PN_DHT_DGRAM_MAX);
	for (size_t i = len - PN_DHT_SIG_BYTES; i < len; i++)
		cr_assert_eq(out_buf[i], 0, "the signature's place is not zeroed");
	return len;
}

static void encode_rejects(const struct pn_dht_msg *m, const char *why)
{
	size_t len = 12345;
	cr_assert_eq(pn_dht_encode(m, out_buf, &len), PN_EINVAL, "encoder accepted %s", why);
	cr_assert_eq(len, 0);
}

static int gdecode(const uint8_t *d, size_t len, struct pn_dht_msg *m)
{
	return pn_dht_decode(guard_copy(d, len), len, m);
}

/* Decoding d must fail; the same bytes with `fix` applied (the valid form)
 * must decode: the rejection is then due to the one field. */
static void rejects(const uint8_t *d, size_t len, const char *why)
{
	struct pn_dht_msg m;
	cr_assert_eq(gdecode(d, len, &m), PN_EPROTO, "decoder accepted %s", why);
}

static void accepts(const uint8_t *d, size_t len, const char *what)
{
	struct pn_dht_msg m;
	int err = gdecode(d, len, &m);
	cr_assert_eq(err, PN_OK, "decoder refused %s: %s", what, pn_strerror(err));
}

/* Encode + sign m with the fixed key == the vector; decode + verify the
 * vector == m; every truncation and a trailing byte are refused. */
static void check_vector(const char *hex, const struct pn_dht_msg *m)
{
	static uint8_t want[HEX_CAP];
	struct pn_identity id;
	struct pn_dht_msg got;
	uint8_t sender_id[PN_ID_BYTES];
	size_t want_len = unhex(hex, want, sizeof(want));

	fixed_identity(&id);
	size_t len = encode_ok(m);
	cr_assert_eq(len, want_len, "type 0x%02x: %zu bytes, want %zu", m->type, len, want_len);
	cr_assert_eq(pn_dht_sign_dgram(&id, out_buf, len), PN_OK);
	cr_assert_arr_eq(out_buf, want, len, "type 0x%02x: bytes differ from the vector", m->type);

	const uint8_t *g = guard_copy(want, want_len);
	cr_assert_eq(pn_dht_decode(g, want_len, &got), PN_OK, "type 0x%02x: vector does not decode", m->type);
	cr_assert(msg_eq(m, &got), "type 0x%02x: decoded fields differ", m->type);
	cr_assert_eq(got.signed_len, want_len - PN_DHT_SIG_BYTES);
	cr_assert_eq(got.sig, g + got.signed_len);
	cr_assert_eq(pn_dht_verify_dgram(g, want_len, &got, sender_id), PN_OK);
	cr_assert_arr_eq(sender_id, id.node_id, PN_ID_BYTES);
	pn_identity_free(&id);

	for (size_t k = 0; k < want_len; k++)
		cr_assert_eq(gdecode(want, k, &got), PN_EPROTO, "type 0x%02x: %zu-byte prefix decoded", m->type, k);
	/* A byte more, at the end or right before the signature. */
	uint8_t longer[HEX_CAP + 1];
	memcpy(longer, want, want_len);
	longer[want_len] = 0;
	rejects(longer, want_len + 1, "a byte after the signature");
	memcpy(longer, want, want_len - PN_DHT_SIG_BYTES);
	longer[want_len - PN_DHT_SIG_BYTES] = 0;
	memcpy(longer + want_len - PN_DHT_SIG_BYTES + 1, want + want_len - PN_DHT_SIG_BYTES, PN_DHT_SIG_BYTES);
	rejects(longer, want_len + 1, "a byte between body and signature");
}

/* Encode, decode, compare; encode the result again: the same bytes. */
static size_t check_round_trip(const struct pn_dht_msg *m)
{
	static uint8_t copy[PN_DHT_DGRAM_MAX];
	struct pn_dht_msg got;
	size_t len = encode_ok(m);

	memcpy(copy, out_buf, len);
	cr_assert_eq(gdecode(copy, len, &got), PN_OK, "type 0x%02x: encoded message does not decode", m->type);
	cr_assert(msg_eq(m, &got), "type 0x%02x: round trip changed a field", m->type);
	cr_assert_eq(encode_ok(&got), len);
	cr_assert_arr_eq(out_buf, copy, len);
	return len;
}

/* ================= vectors ================= */

Test(vectors, ping)
{
	struct pn_dht_msg m = base(PN_DHT_PING, 1);
	check_vector(V_PING, &m);
}

Test(vectors, pong)
{
	struct pn_dht_msg m = base(PN_DHT_PONG, 1);
	m.u.pong = addr4(127, 0, 0, 1, 7070);
	check_vector(V_PONG, &m);
}

Test(vectors, find_node)
{
	struct pn_dht_msg m = base(PN_DHT_FIND_NODE, 2);
	memset(m.u.target, 0xa1, sizeof(m.u.target));
	check_vector(V_FIND_NODE, &m);
}

Test(vectors, find_value)
{
	struct pn_dht_msg m = base(PN_DHT_FIND_VALUE, 3);
	uint8_t cid[PN_CID_BYTES], key[PN_DHT_KEY_BYTES];

	m.u.find_value.kind = PN_DHT_REC_PROVIDER;
	cid2(cid);
	cr_assert_eq(pn_dht_key_of_cid(cid, key), PN_OK);
	unhex(KEY_CID2_HEX, m.u.find_value.key, PN_DHT_KEY_BYTES);
	cr_assert_arr_eq(key, m.u.find_value.key, PN_DHT_KEY_BYTES, "key of CID2");
	check_vector(V_FIND_VALUE, &m);
}

Test(vectors, nodes)
{
	struct pn_dht_msg m = base(PN_DHT_NODES, 2);
	m.u.nodes.n_nodes = 2;
	m.u.nodes.nodes[0] = contact(0xb2, addr4(10, 0, 0, 1, 7071));
	m.u.nodes.nodes[1] = contact(0xc3, addr6_loopback(7072));
	check_vector(V_NODES, &m);
}

Test(vectors, values)
{
	struct pn_dht_msg m = base(PN_DHT_VALUES, 3);
	memset(m.u.nodes.token, 0xd4, PN_DHT_TOKEN_BYTES);
	m.u.nodes.n_nodes = 1;
	m.u.nodes.nodes[0] = contact(0xb2, addr4(10, 0, 0, 1, 7071));
	m.u.nodes.n_records = 1;
	m.u.nodes.records[0] = provider_record();
	check_vector(V_VALUES, &m);

	/* The record's signature in the vector is the publisher's. */
	struct pn_dht_msg got;
	uint8_t d[HEX_CAP], key[PN_DHT_KEY_BYTES];
	size_t len = unhex(V_VALUES, d, sizeof(d));
	unhex(KEY_CID2_HEX, key, sizeof(key));
	cr_assert_eq(gdecode(d, len, &got), PN_OK);
	cr_assert_eq(pn_dht_record_verify(&got.u.nodes.records[0], key), PN_OK);
	cr_assert_eq(pn_dht_record_key_check(&got.u.nodes.records[0], key), PN_OK);
}

Test(vectors, store)
{
	struct pn_dht_msg m = base(PN_DHT_STORE, 4);
	uint8_t key[PN_DHT_KEY_BYTES];

	memset(m.u.store.token, 0xd4, PN_DHT_TOKEN_BYTES);
	cr_assert_eq(pn_dht_key_of_word("report", 6, key), PN_OK);
	unhex(KEY_REPORT_HEX, m.u.store.key, PN_DHT_KEY_BYTES);
	cr_assert_arr_eq(key, m.u.store.key, PN_DHT_KEY_BYTES, "key of \"report\"");
	m.u.store.record = keyword_record();
	check_vector(V_STORE, &m);

	/* The record, signed here, is the vector's. */
	struct pn_identity id;
	struct pn_dht_record r = keyword_record();
	memset(r.sig, 0, sizeof(r.sig));
	memset(r.publisher, 0, sizeof(r.publisher));
	fixed_identity(&id);
	cr_assert_eq(pn_dht_record_sign(&id, key, &r), PN_OK);
	cr_assert(record_eq(&r, &m.u.store.record, false));
	pn_identity_free(&id);
}

Test(vectors, stored)
{
	struct pn_dht_msg m = base(PN_DHT_STORED, 4);
	m.u.stored = PN_DHT_STORE_OK;
	check_vector(V_STORED, &m);
}

Test(vectors, record_signed_bytes)
{
	uint8_t key[PN_DHT_KEY_BYTES], out[PN_DHT_SIGNED_MAX], want[HEX_CAP];
	struct pn_dht_record r = keyword_record();
	/* "peernet-dht-record-1", kind, key, cid, name_len, name */
	size_t want_len = unhex("706565726e65742d6468742d7265636f72642d31 02 " KEY_REPORT_HEX " " CID2_HEX
				" 14 " NAME_HEX, want, sizeof(want));

	unhex(KEY_REPORT_HEX, key, sizeof(key));
	cr_assert_eq(want_len, 114);
	cr_assert_eq(pn_dht_record_signed_bytes(&r, key, out), want_len);
	cr_assert_arr_eq(out, want, want_len);

	struct pn_dht_record p = provider_record();
	unhex(KEY_CID2_HEX, key, sizeof(key));
	want_len = unhex("706565726e65742d6468742d7265636f72642d31 01 " KEY_CID2_HEX " " CID2_HEX " 00",
			 want, sizeof(want));
	cr_assert_eq(pn_dht_record_signed_bytes(&p, key, out), want_len);
	cr_assert_arr_eq(out, want, want_len);
	cr_assert_eq(PN_DHT_SIGNED_MAX, 20 + 1 + 32 + 40 + 1 + 255);
}

/* ================= round trips ================= */

Test(round_trip, every_type_and_shape)
{
	struct pn_dht_msg m;
	char long_name[PN_DHT_NAME_MAX];

	m = base(PN_DHT_PING, 0);
	check_round_trip(&m);
	m = base(PN_DHT_PONG, 0xffffffff);
	m.u.pong = addr6_loopback(65535);
	cr_assert_eq(check_round_trip(&m), 40 + 19 + 64);
	m = base(PN_DHT_FIND_NODE, 7);
	for (int i = 0; i < PN_DHT_KEY_BYTES; i++)
		m.u.target[i] = (uint8_t)i;
	cr_assert_eq(check_round_trip(&m), 40 + 32 + 64);
	m = base(PN_DHT_FIND_VALUE, 8);
	m.u.find_value.kind = PN_DHT_REC_KEYWORD;
	cr_assert_eq(check_round_trip(&m), 137);

	/* NODES: none, and a full list of IPv4 (885 bytes) and of IPv6 contacts. */
	m = base(PN_DHT_NODES, 9);
	cr_assert_eq(check_round_trip(&m), 40 + 1 + 64);
	m.u.nodes.n_nodes = PN_DHT_NODES_MAX;
	for (int i = 0; i < PN_DHT_NODES_MAX; i++)
		m.u.nodes.nodes[i] = contact((uint8_t)i, addr4(10, 0, 0, (uint8_t)i, (uint16_t)(7000 + i)));
	cr_assert_eq(check_round_trip(&m), 40 + 1 + 20 * 39 + 64);
	for (int i = 0; i < PN_DHT_NODES_MAX; i++)
		m.u.nodes.nodes[i] = contact((uint8_t)i, addr6_loopback((uint16_t)(7000 + i)));
	cr_assert_eq(check_round_trip(&m), 40 + 1 + 20 * 51 + 64);

	/* VALUES: a full answer with 20 IPv4 contacts and no record (902), with
	 * keyword records, with a record at an IPv6 address. */
	m = base(PN_DHT_VALUES, 10);
	memset(m.u.nodes.token, 0x5a, PN_DHT_TOKEN_BYTES);
	m.u.nodes.n_nodes = PN_DHT_NODES_MAX;
	for (int i = 0; i < PN_DHT_NODES_MAX; i++)
		m.u.nodes.nodes[i] = contact((uint8_t)i, addr4(10, 0, 0, (uint8_t)i, (uint16_t)(7000 + i)));
	cr_assert_eq(check_round_trip(&m), 902);
	m.u.nodes.n_nodes = 3;
	m.u.nodes.n_records = 3;
	m.u.nodes.records[0] = provider_record();
	m.u.nodes.records[1] = keyword_record();
	m.u.nodes.records[1].addr = addr6_loopback(1);
	memset(long_name, 'x', sizeof(long_name));
	m.u.nodes.records[2] = keyword_record();
	m.u.nodes.records[2].name = long_name;
	m.u.nodes.records[2].name_len = PN_DHT_NAME_MAX;
	m.u.nodes.records[2].addr = addr4(1, 2, 3, 4, 5);
	cr_assert_eq(check_round_trip(&m), 40 + 18 + 3 * 39 + (138 + 7) + (138 + 20 + 19) + (138 + 255 + 7) + 64);

	/* STORE: a PROVIDER record and the longest name. */
	m = base(PN_DHT_STORE, 11);
	m.u.store.record = provider_record();
	cr_assert_eq(check_round_trip(&m), 40 + 16 + 32 + 138 + 64);
	m.u.store.record = keyword_record();
	m.u.store.record.name = long_name;
	m.u.store.record.name_len = PN_DHT_NAME_MAX;
	cr_assert_eq(check_round_trip(&m), 40 + 16 + 32 + 138 + 255 + 64);

	for (uint8_t s = PN_DHT_STORE_OK; s <= PN_DHT_STORE_INVALID; s++) {
		m = base(PN_DHT_STORED, s);
		m.u.stored = s;
		check_round_trip(&m);
	}
}

Test(round_trip, ipv4_rest_of_ip_is_not_sent)
{
	/* Only 4 bytes of an IPv4 address go on the wire; they decode with the
	 * other 12 zero. */
	struct pn_dht_msg m = base(PN_DHT_PONG, 1), got;
	m.u.pong = addr4(127, 0, 0, 1, 7070);
	m.u.pong.ip[9] = 0xee;
	size_t len = encode_ok(&m);
	cr_assert_eq(len, 40 + 7 + 64);
	cr_assert_eq(gdecode(out_buf, len, &got), PN_OK);
	for (int i = 4; i < 16; i++)
		cr_assert_eq(got.u.pong.ip[i], 0);
}

/* ================= trimming ================= */

Test(trim, values_records_first_then_contacts)
{
	struct pn_dht_msg m = base(PN_DHT_VALUES, 3), got;

	m.u.nodes.n_nodes = PN_DHT_NODES_MAX;
	for (int i = 0; i < PN_DHT_NODES_MAX; i++)
		m.u.nodes.nodes[i] = contact((uint8_t)i, addr6_loopback((uint16_t)(1 + i)));
	m.u.nodes.n_records = PN_DHT_RECORDS_MAX;
	for (int i = 0; i < PN_DHT_RECORDS_MAX; i++) {
		m.u.nodes.records[i] = provider_record();
		m.u.nodes.records[i].cid[0] = (uint8_t)i;
	}
	/* 1232 - 104 = 1128 for the body: 18 fixed, 7 records of 145 (1015),
	 * then one IPv6 contact of 51; 44 bytes left. */
	size_t len = encode_ok(&m);
	cr_assert_eq(len, 104 + 18 + 7 * 145 + 51);
	cr_assert_eq(gdecode(out_buf, len, &got), PN_OK);
	cr_assert_eq(got.u.nodes.n_records, 7);
	cr_assert_eq(got.u.nodes.n_nodes, 1);
	cr_assert(msg_eq_prefix(&m, &got));

	/* 20 IPv4 contacts and 2 records: everything fits (1192 bytes). */
	m.u.nodes.n_records = 2;
	for (int i = 0; i < PN_DHT_NODES_MAX; i++)
		m.u.nodes.nodes[i].addr = addr4(10, 0, 0, 1, (uint16_t)(1 + i));
	len = check_round_trip(&m);
	cr_assert_eq(len, 104 + 18 + 2 * 145 + 20 * 39);
	/* A third record pushes contacts out: 3 records, then 15 contacts. */
	m.u.nodes.n_records = 3;
	len = encode_ok(&m);
	cr_assert_eq(gdecode(out_buf, len, &got), PN_OK);
	cr_assert_eq(got.u.nodes.n_records, 3);
	cr_assert_eq(got.u.nodes.n_nodes, (1128 - 18 - 3 * 145) / 39);
	cr_assert(msg_eq_prefix(&m, &got));
}

Test(trim, a_record_that_does_not_fit_ends_the_list)
{
	struct pn_dht_msg m = base(PN_DHT_VALUES, 3), got;
	char name[PN_DHT_NAME_MAX];

	memset(name, 'n', sizeof(name));
	/* Three records of 400 bytes (255-byte names) fill 1218 > 1128: two go. */
	m.u.nodes.n_records = 4;
	for (int i = 0; i < 4; i++) {
		m.u.nodes.records[i] = keyword_record();
		m.u.nodes.records[i].name = name;
		m.u.nodes.records[i].name_len = PN_DHT_NAME_MAX;
		m.u.nodes.records[i].addr = addr4(192, 0, 2, 9, 7070);
	}
	m.u.nodes.records[3] = provider_record(); /* small, but after one that did not fit */
	size_t len = encode_ok(&m);
	cr_assert_eq(gdecode(out_buf, len, &got), PN_OK);
	cr_assert_eq(got.u.nodes.n_records, 2);
	cr_assert_eq(got.u.nodes.n_nodes, 0);
	cr_assert(msg_eq_prefix(&m, &got));
	cr_assert_leq(len, PN_DHT_DGRAM_MAX);
}

/* ================= rejections ================= */

/* A valid datagram (decoded fine first) with byte `at` set to v is refused. */
static void mutate_rejects(const char *hex, size_t at, uint8_t v, const char *why)
{
	uint8_t d[HEX_CAP];
	size_t len = unhex(hex, d, sizeof(d));

	accepts(d, len, "the unchanged datagram");
	cr_assert_lt(at, len);
	d[at] = v;
	rejects(d, len, why);
}

Test(reject, header)
{
	mutate_rejects(V_PING, 0, 'P', "magic 'P'");
	mutate_rejects(V_PING, 1, 'd', "magic 'd'");
	mutate_rejects(V_PING, 2, 0, "version 0");
	mutate_rejects(V_PING, 2, 2, "version 2");
	mutate_rejects(V_PING, 3, 0x00, "type 0");
	mutate_rejects(V_PING, 3, 0x09, "type 9");
	mutate_rejects(V_PING, 3, 0xff, "type 255");
	/* PING with a STORED's status byte: the type fixes the body. */
	mutate_rejects(V_STORED, 3, PN_DHT_PING, "PING with a body");
	mutate_rejects(V_PING, 3, PN_DHT_STORED, "STORED without a body");

	struct pn_dht_msg m;
	cr_assert_eq(pn_dht_decode(NULL, 0, &m), PN_EPROTO);
	uint8_t zeros[PN_DHT_HDR_BYTES + PN_DHT_SIG_BYTES] = { 0 };
	rejects(zeros, sizeof(zeros), "all zeros");
	m = base(0, 1);
	encode_rejects(&m, "type 0");
	m = base(9, 1);
	encode_rejects(&m, "type 9");
}

/* Offsets into the vectors' bodies. */
#define BODY PN_DHT_HDR_BYTES

Test(reject, address_family_and_port)
{
	/* PONG: family at BODY, port at BODY + 5. */
	mutate_rejects(V_PONG, BODY, 0, "family 0");
	mutate_rejects(V_PONG, BODY, 5, "family 5");
	mutate_rejects(V_PONG, BODY, 0x46, "family 'F'");
	uint8_t d[HEX_CAP];
	size_t len = unhex(V_PONG, d, sizeof(d));
	d[BODY + 5] = 0;
	d[BODY + 6] = 0;
	rejects(d, len, "PONG port 0");
	d[BODY + 6] = 1;
	accepts(d, len, "PONG port 1");
	/* Family 6 with the 4 address bytes of an IPv4 one: too short. */
	len = unhex(V_PONG, d, sizeof(d));
	d[BODY] = 6;
	rejects(d, len, "family 6 with 4 bytes");

	/* A NODES contact: family of the second at BODY + 1 + 39 + 32. */
	mutate_rejects(V_NODES, BODY + 1 + 39 + 32, 4, "IPv6 contact read as IPv4 (bytes left over)");
	mutate_rejects(V_NODES, BODY + 1 + 32, 0, "contact family 0");
	len = unhex(V_NODES, d, sizeof(d));
	d[BODY + 1 + 32 + 5] = 0;
	d[BODY + 1 + 32 + 6] = 0;
	rejects(d, len, "contact port 0");

	/* A VALUES record's address: after token, 1 contact, count, record. */
	size_t rec_addr = BODY + 16 + 1 + 39 + 1 + 138;
	mutate_rejects(V_VALUES, rec_addr, 5, "record address family 5");
	len = unhex(V_VALUES, d, sizeof(d));
	d[rec_addr + 5] = 0;
	d[rec_addr + 6] = 0;
	rejects(d, len, "record address port 0");

	struct pn_dht_msg m = base(PN_DHT_PONG, 1);
	m.u.pong = addr4(127, 0, 0, 1, 0);
	encode_rejects(&m, "PONG port 0");
	m.u.pong = addr4(127, 0, 0, 1, 1);
	m.u.pong.family = 5;
	encode_rejects(&m, "PONG family 5");
	m = base(PN_DHT_NODES, 1);
	m.u.nodes.n_nodes = 2;
	m.u.nodes.nodes[0] = contact(1, addr4(1, 1, 1, 1, 1));
	m.u.nodes.nodes[1] = contact(1, addr4(1, 1, 1, 1, 0));
	encode_rejects(&m, "contact port 0");
	m = base(PN_DHT_VALUES, 1);
	m.u.nodes.n_records = 1;
	m.u.nodes.records[0] = provider_record();
	m.u.nodes.records[0].addr.family = 0;
	encode_rejects(&m, "record address family 0");
}

/* Builds a datagram by hand (the encoder would refuse or trim it): header,
 * body, zero signature. */
struct raw {
	uint8_t d[2 * PN_DHT_DGRAM_MAX];
	struct pn_writer w;
};

static void raw_begin(struct raw *r, uint8_t type)
{
	pn_wr_init(&r->w, r->d, sizeof(r->d));
	pn_wr_bytes(&r->w, "pD\x01", 3);
	pn_wr_u8(&r->w, type);
	pn_wr_u32(&r->w, 1);
	uint8_t key[PN_DHT_PUB_BYTES] = { 0 };
	pn_wr_bytes(&r->w, key, sizeof(key));
}

static size_t raw_end(struct raw *r)
{
	uint8_t sig[PN_DHT_SIG_BYTES] = { 0 };
	pn_wr_bytes(&r->w, sig, sizeof(sig));
	cr_assert_eq(r->w.err, 0);
	return r->w.len;
}

static void raw_contact4(struct raw *r, uint8_t fill)
{
	uint8_t id[PN_DHT_KEY_BYTES];
	memset(id, fill, sizeof(id));
	pn_wr_bytes(&r->w, id, sizeof(id));
	pn_wr_bytes(&r->w, "\x04\x0a\x00\x00\x01\x1b\x9e", 7);
}

static void raw_contact6(struct raw *r, uint8_t fill)
{
	uint8_t id[PN_DHT_KEY_BYTES];
	memset(id, fill, sizeof(id));
	pn_wr_bytes(&r->w, id, sizeof(id));
	pn_wr_bytes(&r->w, "\x06\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x01\x1b\x9e", 19);
}

/* A record as on the wire: kind, CID2, name_len, name, publisher, sig, and
 * in VALUES an IPv4 address. */
static void raw_record(struct raw *r, uint8_t kind, const char *name, size_t name_len, bool with_addr)
{
	uint8_t cid[PN_CID_BYTES], zero[PN_DHT_SIG_BYTES] = { 0 };
	cid2(cid);
	pn_wr_u8(&r->w, kind);
	pn_wr_bytes(&r->w, cid, sizeof(cid));
	pn_wr_u8(&r->w, (uint8_t)name_len);
	pn_wr_bytes(&r->w, name, name_len);
	pn_wr_bytes(&r->w, zero, PN_DHT_PUB_BYTES);
	pn_wr_bytes(&r->w, zero, PN_DHT_SIG_BYTES);
	if (with_addr)
		pn_wr_bytes(&r->w, "\x04\xc0\x00\x02\x01\x1b\x9e", 7);
}

Test(reject, counts_above_max)
{
	struct raw r;
	size_t len;

	/* NODES with 20 contacts is fine, with 21 (all there, 860 bytes) not. */
	for (int n = PN_DHT_NODES_MAX; n <= PN_DHT_NODES_MAX + 1; n++) {
		raw_begin(&r, PN_DHT_NODES);
		pn_wr_u8(&r.w, (uint8_t)n);
		for (int i = 0; i < n; i++)
			raw_contact4(&r, (uint8_t)i);
		len = raw_end(&r);
		cr_assert_leq(len, PN_DHT_DGRAM_MAX);
		if (n == PN_DHT_NODES_MAX)
			accepts(r.d, len, "NODES with 20 contacts");
		else
			rejects(r.d, len, "NODES with 21 contacts");
	}
	/* The same in VALUES. */
	for (int n = PN_DHT_NODES_MAX; n <= PN_DHT_NODES_MAX + 1; n++) {
		raw_begin(&r, PN_DHT_VALUES);
		pn_wr_bytes(&r.w, "0123456789abcdef", PN_DHT_TOKEN_BYTES);
		pn_wr_u8(&r.w, (uint8_t)n);
		for (int i = 0; i < n; i++)
			raw_contact4(&r, (uint8_t)i);
		pn_wr_u8(&r.w, 0);
		len = raw_end(&r);
		if (n == PN_DHT_NODES_MAX)
			accepts(r.d, len, "VALUES with 20 contacts");
		else
			rejects(r.d, len, "VALUES with 21 contacts");
	}
	/* 17 records cannot fit one datagram, but the count alone is refused:
	 * 16 provider records without a single contact would be 2450 bytes, so
	 * the check is shown with 7 records present and counts 7 and 17. */
	for (int n = 7; n <= PN_DHT_RECORDS_MAX + 1; n += PN_DHT_RECORDS_MAX + 1 - 7) {
		raw_begin(&r, PN_DHT_VALUES);
		pn_wr_bytes(&r.w, "0123456789abcdef", PN_DHT_TOKEN_BYTES);
		pn_wr_u8(&r.w, 0);
		pn_wr_u8(&r.w, (uint8_t)n);
		for (int i = 0; i < 7; i++)
			raw_record(&r, PN_DHT_REC_PROVIDER, "", 0, true);
		len = raw_end(&r);
		if (n == 7)
			accepts(r.d, len, "VALUES with 7 records");
		else
			rejects(r.d, len, "VALUES record count 17");
	}
	mutate_rejects(V_NODES, BODY, 0xff, "NODES count 255");
	mutate_rejects(V_VALUES, BODY + 16 + 1 + 39, 0xff, "VALUES record count 255");

	struct pn_dht_msg m = base(PN_DHT_NODES, 1);
	m.u.nodes.n_nodes = PN_DHT_NODES_MAX + 1;
	encode_rejects(&m, "NODES with 21 contacts");
	m = base(PN_DHT_VALUES, 1);
	m.u.nodes.n_records = PN_DHT_RECORDS_MAX + 1;
	for (int i = 0; i < PN_DHT_RECORDS_MAX; i++)
		m.u.nodes.records[i] = provider_record();
	encode_rejects(&m, "VALUES with 17 records");
}

/* A STORE of a keyword record with the given name; valid tells whether the
 * decoder must take it. */
static void store_name(uint8_t kind, const char *name, size_t name_len, bool valid, const char *why)
{
	struct raw r;
	raw_begin(&r, PN_DHT_STORE);
	pn_wr_bytes(&r.w, "0123456789abcdef", PN_DHT_TOKEN_BYTES);
	pn_wr_bytes(&r.w, "0123456789abcdef0123456789abcdef", PN_DHT_KEY_BYTES);
	raw_record(&r, kind, name, name_len, false);
	size_t len = raw_end(&r);
	if (valid)
		accepts(r.d, len, why);
	else
		rejects(r.d, len, why);

	/* The same in a VALUES. */
	raw_begin(&r, PN_DHT_VALUES);
	pn_wr_bytes(&r.w, "0123456789abcdef", PN_DHT_TOKEN_BYTES);
	pn_wr_u8(&r.w, 0);
	pn_wr_u8(&r.w, 1);
	raw_record(&r, kind, name, name_len, true);
	len = raw_end(&r);
	if (valid)
		accepts(r.d, len, why);
	else
		rejects(r.d, len, why);

	/* And the encoder agrees. */
	struct pn_dht_msg m = base(PN_DHT_STORE, 1);
	m.u.store.record = keyword_record();
	m.u.store.record.kind = kind;
	m.u.store.record.name = name_len ? name : NULL;
	m.u.store.record.name_len = (uint8_t)name_len;
	if (valid)
		check_round_trip(&m);
	else
		encode_rejects(&m, why);
}

Test(reject, record_names_and_kinds)
{
	char long_name[PN_DHT_NAME_MAX];
	memset(long_name, 'x', sizeof(long_name));

	store_name(PN_DHT_REC_KEYWORD, "a", 1, true, "KEYWORD \"a\"");
	store_name(PN_DHT_REC_KEYWORD, "r\xc3\xa9sum\xc3\xa9.txt", 11, true, "KEYWORD UTF-8");
	store_name(PN_DHT_REC_KEYWORD, long_name, PN_DHT_NAME_MAX, true, "KEYWORD of 255 bytes");
	store_name(PN_DHT_REC_KEYWORD, "", 0, false, "KEYWORD with an empty name");
	store_name(PN_DHT_REC_KEYWORD, "a/b", 3, false, "KEYWORD with a slash");
	store_name(PN_DHT_REC_KEYWORD, "a\\b", 3, false, "KEYWORD with a backslash");
	store_name(PN_DHT_REC_KEYWORD, "..", 2, false, "KEYWORD \"..\"");
	store_name(PN_DHT_REC_KEYWORD, ".", 1, false, "KEYWORD \".\"");
	store_name(PN_DHT_REC_KEYWORD, "a\nb", 3, false, "KEYWORD with a control character");
	store_name(PN_DHT_REC_KEYWORD, "a\xff", 2, false, "KEYWORD with malformed UTF-8");
	store_name(PN_DHT_REC_KEYWORD, "\xc0\xaf", 2, false, "KEYWORD with an overlong form");
	store_name(PN_DHT_REC_PROVIDER, "", 0, true, "PROVIDER without a name");
	store_name(PN_DHT_REC_PROVIDER, "a", 1, false, "PROVIDER with a name");
	store_name(0, "", 0, false, "record kind 0");
	store_name(3, "", 0, false, "record kind 3");
	store_name(3, "a", 1, false, "record kind 3 with a name");
	store_name(0xff, "a", 1, false, "record kind 255");

	/* In the vectors themselves. */
	mutate_rejects(V_STORE, BODY + 16 + 32, 3, "STORE record kind 3");
	mutate_rejects(V_STORE, BODY + 16 + 32, PN_DHT_REC_PROVIDER, "a PROVIDER record with a name");
	mutate_rejects(V_VALUES, BODY + 16 + 1 + 39 + 1, PN_DHT_REC_KEYWORD, "a KEYWORD record without a name");
	mutate_rejects(V_STORE, BODY + 16 + 32 + 1 + 40 + 1 + 9, '/', "a slash in the name");
}

Test(reject, find_value_kind_and_store_status)
{
	mutate_rejects(V_FIND_VALUE, BODY, 0, "FIND_VALUE kind 0");
	mutate_rejects(V_FIND_VALUE, BODY, 3, "FIND_VALUE kind 3");
	static const uint8_t bad_status[] = { PN_DHT_STORE_INVALID + 1, 0x80, 0xff };
	for (size_t i = 0; i < sizeof(bad_status); i++)
		mutate_rejects(V_STORED, BODY, bad_status[i], "STORED status out of range");

	struct pn_dht_msg m = base(PN_DHT_FIND_VALUE, 1);
	m.u.find_value.kind = 0;
	encode_rejects(&m, "FIND_VALUE kind 0");
	m.u.find_value.kind = 3;
	encode_rejects(&m, "FIND_VALUE kind 3");
	m = base(PN_DHT_STORED, 1);
	m.u.stored = PN_DHT_STORE_INVALID + 1;
	encode_rejects(&m, "STORED status 5");
}

Test(reject, trailing_bytes_and_size)
{
	uint8_t d[HEX_CAP];
	struct raw r;
	size_t len;

	/* PONG, STORED, FIND_NODE with one byte more in the body. */
	static const char *const longer[] = {
		HDR("01", "00000001") "00 " PING_SIG,
		HDR("02", "00000001") "04 7f000001 1b9e 00 " PONG_SIG,
		HDR("03", "00000002") A1_32_HEX " a1 " FIND_NODE_SIG,
		HDR("05", "00000003") "01 " KEY_CID2_HEX " 00 " FIND_VALUE_SIG,
		HDR("04", "00000002") "01 " CONTACT1_HEX " " CONTACT2_HEX " " NODES_SIG,
		HDR("08", "00000004") "00 00 " STORED_SIG,
	};
	for (size_t i = 0; i < sizeof(longer) / sizeof(longer[0]); i++) {
		len = unhex(longer[i], d, sizeof(d));
		rejects(d, len, "a trailing byte");
	}

	/* Shorter than header + signature. */
	len = unhex(V_PING, d, sizeof(d));
	rejects(d, len - 1, "103 bytes");
	rejects(d, 0, "nothing");

	/* A VALUES that is well formed but larger than one datagram: 18 IPv6
	 * contacts and a record make 1185 bytes (fine); 20 make 1287. */
	for (int n = 18; n <= 20; n += 2) {
		raw_begin(&r, PN_DHT_VALUES);
		pn_wr_bytes(&r.w, "0123456789abcdef", PN_DHT_TOKEN_BYTES);
		pn_wr_u8(&r.w, (uint8_t)n);
		for (int i = 0; i < n; i++)
			raw_contact6(&r, (uint8_t)i);
		pn_wr_u8(&r.w, 1);
		raw_record(&r, PN_DHT_REC_PROVIDER, "", 0, true);
		len = raw_end(&r);
		if (n == 18) {
			cr_assert_eq(len, 1185);
			accepts(r.d, len, "VALUES of 1185 bytes");
		} else {
			cr_assert_eq(len, 1287);
			rejects(r.d, len, "VALUES of 1287 bytes");
		}
	}
	/* A datagram of exactly PN_DHT_DGRAM_MAX bytes is accepted, one more
	 * refused: a VALUES of 18 IPv6 contacts and one keyword record whose
	 * name fills it to 1232 bytes, then one byte of name more. */
	char name[PN_DHT_NAME_MAX];
	size_t name_len = PN_DHT_DGRAM_MAX - (40 + 16 + 1 + 18 * 51 + 1 + 145 + 64);
	memset(name, 'y', sizeof(name));
	for (size_t extra = 0; extra <= 1; extra++) {
		raw_begin(&r, PN_DHT_VALUES);
		pn_wr_bytes(&r.w, "0123456789abcdef", PN_DHT_TOKEN_BYTES);
		pn_wr_u8(&r.w, 18);
		for (int i = 0; i < 18; i++)
			raw_contact6(&r, (uint8_t)i);
		pn_wr_u8(&r.w, 1);
		raw_record(&r, PN_DHT_REC_KEYWORD, name, name_len + extra, true);
		len = raw_end(&r);
		cr_assert_eq(len, PN_DHT_DGRAM_MAX + extra);
		if (!extra)
			accepts(r.d, len, "a datagram of exactly 1232 bytes");
	}
	rejects(r.d, len, "a datagram of 1233 bytes");
}

/* ================= lengths and addresses ================= */

Test(lengths, wire_lengths)
{
	struct pn_dht_addr a4 = addr4(1, 2, 3, 4, 5), a6 = addr6_loopback(5), bad = { .family = 5, .port = 1 };
	struct pn_dht_contact c4 = contact(1, a4), c6 = contact(1, a6);
	struct pn_dht_record p = provider_record(), k = keyword_record();

	cr_assert_eq(pn_dht_addr_wire_len(&a4), 7);
	cr_assert_eq(pn_dht_addr_wire_len(&a6), 19);
	cr_assert_eq(pn_dht_addr_wire_len(&bad), 0);
	cr_assert_eq(pn_dht_contact_wire_len(&c4), 39);
	cr_assert_eq(pn_dht_contact_wire_len(&c6), 51);
	cr_assert_eq(pn_dht_record_wire_len(&p, false), 138);
	cr_assert_eq(pn_dht_record_wire_len(&p, true), 145);
	cr_assert_eq(pn_dht_record_wire_len(&k, false), 158);
	k.addr = a6;
	cr_assert_eq(pn_dht_record_wire_len(&k, true), 177);
}

Test(lengths, addr_valid)
{
	struct pn_dht_addr a = addr4(0, 0, 0, 0, 1);
	cr_assert(pn_dht_addr_valid(&a));
	a.port = 0;
	cr_assert_not(pn_dht_addr_valid(&a));
	a = addr6_loopback(65535);
	cr_assert(pn_dht_addr_valid(&a));
	for (int f = 0; f < 256; f++) {
		a.family = (uint8_t)f;
		cr_assert_eq(pn_dht_addr_valid(&a), f == 4 || f == 6, "family %d", f);
	}
}

/* libFuzzer target for the DHT's datagrams (src/wire/dht_wire.c).
 *
 * The input is one datagram. If it decodes, it must re-encode, and the
 * encoding must be the input byte for byte up to the signature (the wire
 * form is canonical, and a decoded message always fits one datagram, so
 * nothing is trimmed); decoding that again must give the same fields. The
 * words of every keyword record's name are split as a publisher would
 * (pn_dht_name_words) and each must be a distinct run of word bytes inside
 * the name. Any disagreement aborts. Signatures are not checked: that is
 * OpenSSL's code, and it would slow the target tenfold.
 */
#include <stdlib.h>
#include <string.h>
#include "crypto/crypto.h"
#include "util/text.h"
#include "wire/dht_wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t out[PN_DHT_DGRAM_MAX];

static void check(bool ok)
{
	if (!ok)
		abort();
}

static bool bytes_eq(const void *a, const void *b, size_t n)
{
	return n == 0 || (a && b && memcmp(a, b, n) == 0);
}

static bool addr_eq(const struct pn_dht_addr *a, const struct pn_dht_addr *b)
{
	return a->family == b->family && a->port == b->port && memcmp(a->ip, b->ip, sizeof(a->ip)) == 0;
}

static bool record_eq(const struct pn_dht_record *a, const struct pn_dht_record *b, bool with_addr)
{
	return a->kind == b->kind && memcmp(a->cid, b->cid, PN_CID_BYTES) == 0 && a->name_len == b->name_len &&
	       bytes_eq(a->name, b->name, a->name_len) &&
	       memcmp(a->publisher, b->publisher, PN_DHT_PUB_BYTES) == 0 &&
	       memcmp(a->sig, b->sig, PN_DHT_SIG_BYTES) == 0 && (!with_addr || addr_eq(&a->addr, &b->addr));
}

static bool msg_eq(const struct pn_dht_msg *a, const struct pn_dht_msg *b)
{
	if (a->type != b->type || a->txid != b->txid || memcmp(a->sender_key, b->sender_key, PN_DHT_PUB_BYTES) ||
	    a->signed_len != b->signed_len)
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
		if (a->u.nodes.n_nodes != b->u.nodes.n_nodes || a->u.nodes.n_records != b->u.nodes.n_records ||
		    memcmp(a->u.nodes.token, b->u.nodes.token, PN_DHT_TOKEN_BYTES))
			return false;
		for (size_t i = 0; i < a->u.nodes.n_nodes; i++)
			if (memcmp(a->u.nodes.nodes[i].id, b->u.nodes.nodes[i].id, PN_DHT_KEY_BYTES) ||
			    !addr_eq(&a->u.nodes.nodes[i].addr, &b->u.nodes.nodes[i].addr))
				return false;
		for (size_t i = 0; i < a->u.nodes.n_records; i++)
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

/* A decoded record obeys the rules the decoder promises, and its name
 * splits into distinct words of word bytes inside it. */
static void check_record(const struct pn_dht_record *r)
{
	struct pn_dht_word words[PN_DHT_WORDS_MAX];

	if (r->kind == PN_DHT_REC_PROVIDER) {
		check(r->name_len == 0);
		return;
	}
	check(r->kind == PN_DHT_REC_KEYWORD && r->name_len >= 1 && pn_name_valid(r->name, r->name_len));
	size_t n = pn_dht_name_words(r->name, r->name_len, words, PN_DHT_WORDS_MAX);
	for (size_t i = 0; i < n; i++) {
		check(words[i].len >= PN_DHT_WORD_MIN && words[i].off + words[i].len <= r->name_len);
		for (size_t k = 0; k < words[i].len; k++)
			check(pn_word_byte((uint8_t)r->name[words[i].off + k]));
		/* Whole words: not part of a longer run. */
		check(words[i].off == 0 || !pn_word_byte((uint8_t)r->name[words[i].off - 1]));
		check(words[i].off + words[i].len == r->name_len ||
		      !pn_word_byte((uint8_t)r->name[words[i].off + words[i].len]));
		for (size_t j = 0; j < i; j++) {
			if (words[j].len != words[i].len)
				continue;
			bool same = true;
			for (size_t k = 0; k < words[i].len && same; k++)
				same = pn_ascii_lower((uint8_t)r->name[words[i].off + k]) ==
				       pn_ascii_lower((uint8_t)r->name[words[j].off + k]);
			check(!same);
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pn_dht_msg m, again;
	size_t len = 0;

	if (pn_dht_decode(data, size, &m) != PN_OK)
		return 0;
	check(size <= PN_DHT_DGRAM_MAX && m.signed_len + PN_DHT_SIG_BYTES == size && m.sig == data + m.signed_len);
	if (m.type == PN_DHT_PONG)
		check(pn_dht_addr_valid(&m.u.pong));
	if (m.type == PN_DHT_NODES || m.type == PN_DHT_VALUES) {
		check(m.u.nodes.n_nodes <= PN_DHT_NODES_MAX && m.u.nodes.n_records <= PN_DHT_RECORDS_MAX);
		for (size_t i = 0; i < m.u.nodes.n_nodes; i++)
			check(pn_dht_addr_valid(&m.u.nodes.nodes[i].addr));
		for (size_t i = 0; i < m.u.nodes.n_records; i++) {
			check(pn_dht_addr_valid(&m.u.nodes.records[i].addr));
			check_record(&m.u.nodes.records[i]);
		}
	}
	if (m.type == PN_DHT_STORE)
		check_record(&m.u.store.record);

	check(pn_dht_encode(&m, out, &len) == PN_OK);
	check(len == size && memcmp(out, data, m.signed_len) == 0);
	memcpy(out + m.signed_len, m.sig, PN_DHT_SIG_BYTES);
	check(pn_dht_decode(out, len, &again) == PN_OK);
	check(msg_eq(&m, &again));
	return 0;
}

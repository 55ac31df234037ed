/* libFuzzer target: the directory core as a state machine. The input is a
 * sequence of operations (register from one of a few source addresses in two
 * address blocks or from none, heartbeat, offer, withdraw, find, search, tick,
 * unregister) over a few node IDs and content IDs, run on a directory with
 * small limits (in total, per node, per source and per block) and beside a
 * plain shadow model. After every operation
 * the return code must be the one the model predicts, the counts must agree
 * and stay within the limits, and dir_check() must pass; find must return
 * distinct live providers and the model's total; search must return exactly
 * the model's best matches, computed by a separate, naive matcher. Any
 * disagreement calls abort(). */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include "proto/directory.h"
#include "wire/wire.h"

#define NODES 6
#define CIDS 8
#define MAX_NODES 4
#define MAX_PER_NODE 3
#define MAX_OFFERS 8
#define MAX_RESULTS 3
#define SOURCES 3          /* source keys 1..3; 1 and 2 in block BLOCK0 + 1, 3 in BLOCK0 + 2 */
#define BLOCK0 0x100
#define MAX_NODES_PER_SOURCE 2
#define MAX_NODES_PER_BLOCK 3
#define MAX_OFFERS_PER_SOURCE 4
#define MAX_OFFERS_PER_BLOCK 5
#define TIMEOUT_MS 100
#define TIME_STEP_MS 4    /* each op advances the clock by (op byte >> 3) steps */
#define RAW_NAME_MAX 12   /* bytes of a name taken straight from the input */
#define RAW_QUERY_MAX 20
#define OUT_MAX 8

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum op { OP_REGISTER, OP_HEARTBEAT, OP_OFFER, OP_WITHDRAW, OP_FIND, OP_SEARCH, OP_TICK, OP_UNREGISTER, OP_COUNT };

static const char *const addrs[] = { "10.0.0.1:7072", "[::1]:1", "x", "", "bad addr", "\x01\x02", "h:\x7f" };
static const char *const names[] = {
	"Quarterly Report 2023.pdf", "quarterly_report_2024.PDF", "report", "Rep.txt", "café été.txt",
	"headquarters.png", "a b c", "QUART-q", "", "a/b", "..", "\xff\xfe", "x\ty",
};
static const char *const queries[] = { "report", "REP", "q", "quart rep", "caf", "été", "2024 pdf", "a b c",
				       "txt", "", "...", "a b c d e f g h i", "zzz", "Q-R" };

struct model {
	bool alive[NODES];
	char addr[NODES][DIR_ADDR_MAX + 1];
	uint64_t last_seen[NODES];
	unsigned src[NODES], blk[NODES]; /* where it registered from; 0: not counted */
	bool offered[NODES][CIDS];
	char name[CIDS][PN_NAME_MAX + 1];
};

struct input {
	const uint8_t *p;
	size_t left;
};

static uint8_t next(struct input *in)
{
	if (!in->left)
		return 0;
	in->left--;
	return *in->p++;
}

static void check(bool ok)
{
	if (!ok)
		abort();
}

static void node_id(unsigned n, uint8_t id[PN_ID_BYTES])
{
	memset(id, 0x77, PN_ID_BYTES);
	id[PN_ID_BYTES - 1] = (uint8_t)n;
}

static struct pn_cid cid_of(unsigned c)
{
	struct pn_cid cid;

	memset(cid.root, 0, sizeof(cid.root));
	cid.root[c % 3] = (uint8_t)(c + 1); /* varied order between root and number */
	cid.size = c % 2;
	return cid;
}

static unsigned cid_num(const struct pn_cid *cid)
{
	for (unsigned c = 0; c < CIDS; c++) {
		struct pn_cid k = cid_of(c);

		if (memcmp(k.root, cid->root, PN_HASH_BYTES) == 0 && k.size == cid->size)
			return c;
	}
	abort();
}

static unsigned providers(const struct model *m, unsigned c)
{
	unsigned n = 0;

	for (unsigned i = 0; i < NODES; i++)
		n += m->offered[i][c];
	return n;
}

static unsigned model_nodes(const struct model *m)
{
	unsigned n = 0;

	for (unsigned i = 0; i < NODES; i++)
		n += m->alive[i];
	return n;
}

static unsigned node_offers(const struct model *m, unsigned node)
{
	unsigned n = 0;

	for (unsigned c = 0; c < CIDS; c++)
		n += m->offered[node][c];
	return n;
}

/* Live nodes registered from key (a source or a block; 0 counts nothing), and their offers. */
static unsigned nodes_from(const struct model *m, unsigned key)
{
	unsigned n = 0;

	for (unsigned i = 0; key && i < NODES; i++)
		n += m->alive[i] && (m->src[i] == key || m->blk[i] == key);
	return n;
}

static unsigned node_offers(const struct model *m, unsigned node);

static unsigned offers_from(const struct model *m, unsigned key)
{
	unsigned n = 0;

	for (unsigned i = 0; key && i < NODES; i++)
		if (m->alive[i] && (m->src[i] == key || m->blk[i] == key))
			n += node_offers(m, i);
	return n;
}

static void model_drop(struct model *m, unsigned node)
{
	m->alive[node] = false;
	for (unsigned c = 0; c < CIDS; c++) {
		m->offered[node][c] = false;
		if (!providers(m, c))
			m->name[c][0] = '\0';
	}
}

static unsigned model_expire(struct model *m, uint64_t now)
{
	unsigned dropped = 0;

	for (unsigned i = 0; i < NODES; i++)
		if (m->alive[i] && m->last_seen[i] + TIMEOUT_MS <= now) {
			model_drop(m, i);
			dropped++;
		}
	return dropped;
}

static bool word_byte(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80;
}

static unsigned char lower(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
}

/* Splits s into words: returns how many (up to cap stored). */
static unsigned split(const char *s, const char *starts[], size_t lens[], unsigned cap)
{
	unsigned n = 0;

	for (size_t i = 0; s[i];) {
		if (!word_byte((unsigned char)s[i])) {
			i++;
			continue;
		}
		size_t j = i;

		while (s[j] && word_byte((unsigned char)s[j]))
			j++;
		if (n < cap) {
			starts[n] = s + i;
			lens[n] = j - i;
		}
		n++;
		i = j;
	}
	return n;
}

/* Naive: every query word is a prefix (ASCII case-folded) of a word of the name. */
static bool naive_match(const char *name, const char *qw[], const size_t ql[], unsigned nq)
{
	const char *nw[PN_NAME_MAX];
	size_t nl[PN_NAME_MAX];
	unsigned nn = split(name, nw, nl, PN_NAME_MAX);

	for (unsigned i = 0; i < nq; i++) {
		bool found = false;

		for (unsigned j = 0; j < nn && !found; j++) {
			if (nl[j] < ql[i])
				continue;
			found = true;
			for (size_t k = 0; k < ql[i]; k++)
				if (lower((unsigned char)nw[j][k]) != lower((unsigned char)qw[i][k]))
					found = false;
		}
		if (!found)
			return false;
	}
	return true;
}

static bool model_before(const struct model *m, unsigned a, unsigned b)
{
	unsigned pa = providers(m, a), pb = providers(m, b);
	struct pn_cid ca = cid_of(a), cb = cid_of(b);
	int cmp;

	if (pa != pb)
		return pa > pb;
	cmp = strcmp(m->name[a], m->name[b]);
	if (cmp)
		return cmp < 0;
	cmp = memcmp(ca.root, cb.root, PN_HASH_BYTES);
	if (cmp)
		return cmp < 0;
	return ca.size < cb.size;
}

static void do_search(struct dir *d, const struct model *m, const char *query, size_t max)
{
	struct dir_result out[OUT_MAX];
	const char *qw[DIR_WORDS_MAX];
	size_t ql[DIR_WORDS_MAX];
	unsigned nq = split(query, qw, ql, DIR_WORDS_MAX);
	unsigned match[CIDS], nmatch = 0;
	int got = dir_search(d, query, out, max);

	if (strlen(query) == 0 || strlen(query) > DIR_QUERY_MAX || nq == 0 || nq > DIR_WORDS_MAX) {
		check(got == PN_EINVAL);
		return;
	}
	for (unsigned c = 0; c < CIDS; c++)
		if (providers(m, c) && naive_match(m->name[c], qw, ql, nq)) {
			unsigned pos = nmatch++;

			while (pos > 0 && model_before(m, c, match[pos - 1])) {
				match[pos] = match[pos - 1];
				pos--;
			}
			match[pos] = c;
		}
	size_t want = nmatch < max ? nmatch : max;
	if (want > MAX_RESULTS)
		want = MAX_RESULTS;
	check(got >= 0 && (size_t)got == want);
	for (int i = 0; i < got; i++) {
		check(cid_num(&out[i].cid) == match[i]);
		check(strcmp(out[i].name, m->name[match[i]]) == 0);
		check(out[i].providers == providers(m, match[i]));
	}
}

static void do_find(struct dir *d, const struct model *m, unsigned c, int asker, size_t max)
{
	struct dir_provider out[OUT_MAX];
	struct pn_cid cid = cid_of(c);
	uint8_t asker_id[PN_ID_BYTES];
	uint32_t total = UINT32_MAX;
	size_t got;
	unsigned want_total = providers(m, c);

	if (asker >= 0) {
		node_id((unsigned)asker, asker_id);
		want_total -= m->offered[asker][c];
	}
	got = dir_find(d, &cid, asker >= 0 ? asker_id : NULL, out, max, &total);
	check(total == want_total);
	size_t want = want_total < max ? want_total : max;
	check(got == (want < MAX_RESULTS ? want : MAX_RESULTS));
	for (size_t i = 0; i < got; i++) {
		unsigned n = out[i].node_id[PN_ID_BYTES - 1];
		uint8_t id[PN_ID_BYTES];

		check(n < NODES && (int)n != asker && m->offered[n][c]);
		node_id(n, id);
		check(memcmp(id, out[i].node_id, PN_ID_BYTES) == 0);
		check(strcmp(out[i].addr, m->addr[n]) == 0);
		for (size_t j = 0; j < i; j++)
			check(out[j].node_id[PN_ID_BYTES - 1] != n);
	}
}

/* A NUL-terminated string from the input: up to cap bytes, stopping at a NUL. */
static void raw_string(struct input *in, char *out, size_t cap)
{
	size_t len = next(in) % (cap + 1), i;

	for (i = 0; i < len; i++) {
		out[i] = (char)next(in);
		if (!out[i])
			break;
	}
	out[i] = '\0';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dir_opts opts = {
		.max_nodes = MAX_NODES,
		.max_offers_per_node = MAX_PER_NODE,
		.max_results = MAX_RESULTS,
		.node_timeout_ms = TIMEOUT_MS,
		.seed = 1,
		.max_offers = MAX_OFFERS,
		.max_nodes_per_source = MAX_NODES_PER_SOURCE,
		.max_nodes_per_block = MAX_NODES_PER_BLOCK,
		.max_offers_per_source = MAX_OFFERS_PER_SOURCE,
		.max_offers_per_block = MAX_OFFERS_PER_BLOCK,
	};
	struct model m;
	struct input in = { data, size };
	struct dir *d = dir_new(&opts);
	uint64_t now = 0;

	if (!d)
		return 0;
	memset(&m, 0, sizeof(m));
	while (in.left) {
		uint8_t opb = next(&in);
		unsigned node = next(&in) % NODES, c = next(&in) % CIDS;
		uint8_t id[PN_ID_BYTES];
		struct pn_cid cid = cid_of(c);
		char text[RAW_QUERY_MAX + 1];
		const char *s;
		int rc;

		now += (uint64_t)(opb >> 3) * TIME_STEP_MS;
		node_id(node, id);
		switch (opb % OP_COUNT) {
		case OP_REGISTER: {
			unsigned src = next(&in) % (SOURCES + 1);
			unsigned blk = src ? BLOCK0 + (src <= 2 ? 1 : 2) : 0;

			s = addrs[c % (sizeof(addrs) / sizeof(addrs[0]))];
			rc = src ? dir_register_from(d, id, s, src, blk, now) : dir_register(d, id, s, now);
			if (!*s || strchr(s, ' ') || s[0] == '\x01' || strchr(s, '\x7f')) {
				check(rc == PN_EINVAL);
				break;
			}
			model_expire(&m, now);
			/* A node that registers from elsewhere starts afresh there. */
			if (m.alive[node] && (m.src[node] != src || m.blk[node] != blk))
				model_drop(&m, node);
			if (!m.alive[node] &&
			    (model_nodes(&m) >= MAX_NODES || (src && nodes_from(&m, src) >= MAX_NODES_PER_SOURCE) ||
			     (blk && nodes_from(&m, blk) >= MAX_NODES_PER_BLOCK))) {
				check(rc == PN_ELIMIT);
				break;
			}
			check(rc == 0);
			m.alive[node] = true;
			m.last_seen[node] = now;
			m.src[node] = src;
			m.blk[node] = blk;
			strcpy(m.addr[node], s);
			break;
		}
		case OP_HEARTBEAT:
			rc = dir_heartbeat(d, id, now);
			model_expire(&m, now);
			check(rc == (m.alive[node] ? 0 : PN_ENOTFOUND));
			if (m.alive[node])
				m.last_seen[node] = now;
			break;
		case OP_OFFER: {
			uint8_t how = next(&in);

			if (how & 1) {
				raw_string(&in, text, RAW_NAME_MAX);
				s = text;
			} else {
				s = names[(how >> 1) % (sizeof(names) / sizeof(names[0]))];
			}
			rc = dir_offer(d, id, &cid, s, now);
			if (!pn_name_valid(s, strlen(s))) {
				check(rc == PN_EINVAL);
				break;
			}
			model_expire(&m, now);
			if (!m.alive[node]) {
				check(rc == PN_ENOTFOUND);
				break;
			}
			m.last_seen[node] = now;
			if (m.offered[node][c]) {
				check(rc == 0);
				break;
			}
			unsigned total = 0;
			for (unsigned i = 0; i < NODES; i++)
				total += node_offers(&m, i);
			if (node_offers(&m, node) >= MAX_PER_NODE || total >= MAX_OFFERS ||
			    (m.src[node] && offers_from(&m, m.src[node]) >= MAX_OFFERS_PER_SOURCE) ||
			    (m.blk[node] && offers_from(&m, m.blk[node]) >= MAX_OFFERS_PER_BLOCK)) {
				check(rc == PN_ELIMIT);
				break;
			}
			check(rc == 0);
			if (!providers(&m, c))
				strcpy(m.name[c], s);
			m.offered[node][c] = true;
			break;
		}
		case OP_WITHDRAW:
			dir_withdraw(d, id, &cid);
			m.offered[node][c] = false;
			if (!providers(&m, c))
				m.name[c][0] = '\0';
			break;
		case OP_FIND: {
			uint8_t how = next(&in);

			do_find(d, &m, c, (how & 1) ? (int)node : -1, (how >> 1) % OUT_MAX);
			break;
		}
		case OP_SEARCH: {
			uint8_t how = next(&in);

			if (how & 1) {
				raw_string(&in, text, RAW_QUERY_MAX);
				s = text;
			} else {
				s = queries[(how >> 1) % (sizeof(queries) / sizeof(queries[0]))];
			}
			do_search(d, &m, s, c);
			break;
		}
		case OP_TICK:
			check(dir_tick(d, now) == model_expire(&m, now));
			break;
		case OP_UNREGISTER:
			dir_unregister(d, id);
			if (m.alive[node])
				model_drop(&m, node);
			break;
		}

		unsigned contents = 0, offers = 0;
		uint64_t oldest = UINT64_MAX;
		for (unsigned i = 0; i < CIDS; i++)
			contents += providers(&m, i) != 0;
		for (unsigned i = 0; i < NODES; i++) {
			offers += node_offers(&m, i);
			if (m.alive[i] && m.last_seen[i] + TIMEOUT_MS < oldest)
				oldest = m.last_seen[i] + TIMEOUT_MS;
		}
		check(dir_node_count(d) == model_nodes(&m) && dir_node_count(d) <= MAX_NODES);
		check(dir_content_count(d) == contents && dir_offer_count(d) == offers && offers <= MAX_OFFERS);
		check(dir_next_wakeup(d) == oldest);
		for (unsigned k = 1; k <= SOURCES; k++)
			check(nodes_from(&m, k) <= MAX_NODES_PER_SOURCE && offers_from(&m, k) <= MAX_OFFERS_PER_SOURCE);
		for (unsigned k = BLOCK0 + 1; k <= BLOCK0 + 2; k++)
			check(nodes_from(&m, k) <= MAX_NODES_PER_BLOCK && offers_from(&m, k) <= MAX_OFFERS_PER_BLOCK);
		check(dir_check(d) == 0);
	}
	dir_free(d);
	return 0;
}

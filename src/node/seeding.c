/* Super-seeding: see node_int.h. The source announces each downloader a few
 * chunks at a time, least-announced first, so its upload goes to chunks the
 * swarm does not have yet. */
#include <stdlib.h>
#include <string.h>
#include "node/node_int.h"

static uint64_t next_rand(struct node *n)
{
	/* splitmix64 */
	uint64_t z = (n->rng += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static struct seed_ctx *seed_ctx_get(struct node *n, const struct pn_cid *cid)
{
	for (struct seed_ctx *sc = n->seeds; sc; sc = sc->next)
		if (!memcmp(&sc->cid, cid, sizeof *cid))
			return sc;
	if (n->nseeds >= NODE_MAX_SEED_CTX)
		return NULL;
	struct seed_ctx *sc = calloc(1, sizeof *sc);
	if (!sc)
		return NULL;
	sc->cid = *cid;
	sc->nchunks = pn_cid_chunks(cid);
	sc->announced = calloc(sc->nchunks, sizeof *sc->announced);
	if (!sc->announced) {
		free(sc);
		return NULL;
	}
	sc->next = n->seeds;
	n->seeds = sc;
	n->nseeds++;
	return sc;
}

static bool bit(const uint8_t *bm, uint32_t i)
{
	return bm && (bm[i / 8] & (0x80 >> (i % 8)));
}

/* Picks the least-announced chunk p has not been shown and does not hold,
 * scanning from a random start so ties spread. UINT32_MAX if none. */
static uint32_t pick(struct node *n, struct seed_ctx *sc, const struct peer_cid *pc)
{
	uint32_t best = UINT32_MAX, best_count = UINT32_MAX;
	uint32_t start = (uint32_t)(next_rand(n) % sc->nchunks);
	for (uint32_t k = 0; k < sc->nchunks; k++) {
		uint32_t i = (start + k) % sc->nchunks;
		if (bit(pc->revealed, i) || bit(pc->bitmap, i))
			continue;
		if (sc->announced[i] < best_count) {
			best = i;
			best_count = sc->announced[i];
			if (best_count == 0)
				break;
		}
	}
	return best;
}

/* True when this node has no chunk request waiting and little queued to send. */
static bool uplink_idle(struct node *n)
{
	for (struct peer *p = n->peers; p; p = p->next)
		if (p->upq_len || (p->conn && pn_conn_queued(p->conn) > PN_CHUNK_SIZE))
			return false;
	return true;
}

/* Chunks announced to p that it does not report holding yet. */
static uint32_t outstanding(const struct seed_ctx *sc, const struct peer_cid *pc)
{
	uint32_t count = 0;
	for (uint32_t i = 0; i < sc->nchunks; i++)
		count += bit(pc->revealed, i) && !bit(pc->bitmap, i);
	return count;
}

static bool reveal_one(struct node *n, struct seed_ctx *sc, struct peer_cid *pc, uint32_t *index)
{
	uint32_t i = pick(n, sc, pc);
	if (i == UINT32_MAX)
		return false;
	/* Once every chunk has left (or is leaving) the source, a second copy goes
	 * only to a downloader with nothing else of ours to fetch: the others get
	 * the chunk from the swarm, and the source's uplink is not spent twice. */
	if (sc->announced[i] > 0 && (outstanding(sc, pc) > 0 || !uplink_idle(n)))
		return false;
	pc->revealed[i / 8] |= (uint8_t)(0x80 >> (i % 8));
	sc->announced[i]++;
	*index = i;
	return true;
}

int seed_start(struct node *n, struct peer *p, struct peer_cid *pc)
{
	struct seed_ctx *sc = seed_ctx_get(n, &pc->cid);
	if (!sc)
		return PN_ELIMIT;
	pc->revealed = calloc(1, (sc->nchunks + 7) / 8);
	if (!pc->revealed)
		return PN_ENOMEM;
	/* With many downloaders and few chunks, showing each a few would hand
	 * the same chunks to several: show fewer, so each starts with its own. */
	uint32_t downloaders = 1;
	for (struct peer *q = n->peers; q; q = q->next)
		for (int i = 0; i < q->ncids; i++)
			if (q != p && q->cids[i].revealed && !memcmp(&q->cids[i].cid, &pc->cid, sizeof pc->cid))
				downloaders++;
	uint32_t ahead = sc->nchunks / downloaders;
	if (ahead < 1)
		ahead = 1;
	if (ahead > SEED_REVEAL_AHEAD)
		ahead = SEED_REVEAL_AHEAD;
	uint32_t index;
	for (uint32_t k = 0; k < ahead && reveal_one(n, sc, pc, &index); k++)
		;
	return PN_OK;
}

void seed_on_have(struct node *n, struct peer *p, struct peer_cid *pc, uint32_t index)
{
	if (!bit(pc->revealed, index))
		return;
	struct seed_ctx *sc = seed_ctx_get(n, &pc->cid);
	uint32_t next;
	if (!sc || !reveal_one(n, sc, pc, &next))
		return;
	struct pn_msg m = {.type = PN_MSG_HAVE};
	m.u.cidref.cid = pc->cid;
	m.u.cidref.index = next;
	(void)node_send(n, p->conn, &m);
}

void seed_free_all(struct node *n)
{
	while (n->seeds) {
		struct seed_ctx *sc = n->seeds;
		n->seeds = sc->next;
		free(sc->announced);
		free(sc);
	}
	n->nseeds = 0;
}

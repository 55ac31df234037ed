/* The swarm simulator's results (see swarm_sim_int.h): the Kurose-Ross
 * bound, the summary of a run, and what the nodes still downloading were
 * waiting for when a run did not finish.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include "swarm_sim_int.h"

double swarm_sim_bound(const struct swarm_sim_params *p)
{
	double F = (double)(p->file_size ? p->file_size : SS_DEFAULT_SIZE);
	double us = (double)(p->seed_up ? p->seed_up : SS_DEFAULT_RATE);
	double u = (double)(p->node_up ? p->node_up : SS_DEFAULT_RATE);
	uint32_t div = p->slow_div ? p->slow_div : SS_DEFAULT_SLOW_DIV;
	uint32_t slow = (uint32_t)llround(p->slow_frac * p->nodes);
	double sum = us + (double)(p->nodes - slow) * u + (double)slow * floor(u / div);
	double b = F / us;
	if (p->down && F / (double)p->down > b)
		b = F / (double)p->down;
	if ((double)p->nodes * F / sum > b)
		b = (double)p->nodes * F / sum;
	return b;
}

void ssim_describe_stall(struct ssim *s)
{
	uint32_t shown = 0;
	for (uint32_t i = 1; i <= s->ndown && shown < 10; i++) {
		struct snode *n = &s->nodes[i];
		if (n->state != NS_DOWNLOADING)
			continue;
		shown++;
		struct engine_download_info info;
		bool have_info = n->e && engine_download_info(n->e, &s->cid, &info);
		fprintf(s->p.diag,
			"swarm-sim: node %u not done at t=%.3f s: %u/%u chunks written, %u links, engine: %s%u/%u chunks, "
			"%u providers, hashes %s, has providers %s, next wake-up %" PRIu64 " ms\n",
			i, s->now / 1e6, n->have_count, s->nchunks, n->nlinks, have_info ? "" : "(no download) ",
			have_info ? info.have : 0, have_info ? info.nchunks : 0, have_info ? info.peers : 0,
			have_info && info.have_hashes ? "yes" : "no",
			n->e && engine_download_has_providers(n->e, &s->cid) ? "yes" : "no",
			n->e ? engine_next_wakeup(n->e) : 0);
		for (uint32_t j = 0; j < n->nlinks && j < 4; j++) {
			struct engine_peer_info pi;
			uint32_t k = n->links[j];
			struct slink *l = &s->links[k];
			uint32_t other = l->node[1 - side_of(l, i)];
			if (engine_peer_info(n->e, k, &pi))
				fprintf(s->p.diag,
					"swarm-sim:   link %u to node %u (%s): ready %d, am_choking %d, peer_choking %d, "
					"upq %u, queued here %" PRIu64 " B, there %" PRIu64 " B\n",
					k, other, other == 0 ? "seed" : s->nodes[other].state == NS_DONE ? "done" : "downloading",
					pi.ready, pi.am_choking, pi.peer_choking, pi.upq, l->q[side_of(l, i)].queued,
					l->q[1 - side_of(l, i)].queued);
		}
	}
}

void ssim_summarise(struct ssim *s)
{
	struct swarm_sim_result *r = s->r;
	double F = (double)s->cid.size;
	double sum = 0, down = 0;
	uint64_t digest = s->p.seed;
	r->downloaders = s->ndown;
	r->first_s = 0;
	for (uint32_t i = 1; i <= s->ndown; i++) {
		struct snode *n = &s->nodes[i];
		bool done = n->finished;
		if (!n->leaver)
			r->stayers++;
		if (done) {
			double t = (double)(n->done_us - n->start_us) / 1e6;
			r->finished++;
			sum += t;
			down += (double)n->down_chunk_bytes;
			if (t > r->max_s)
				r->max_s = t;
			if (!r->first_s || n->done_us / 1e6 < r->first_s)
				r->first_s = n->done_us / 1e6;
			if (!n->leaver) {
				r->stayers_finished++;
				if (n->done_us / 1e6 > r->dist_s)
					r->dist_s = n->done_us / 1e6;
			}
		}
		digest = mix64(digest, n->done_us);
		digest = mix64(digest, n->up_chunk_bytes);
		if (n->got_corrupt && !n->malicious) {
			r->corrupt_receivers++;
			if (n->e && engine_is_banned(n->e, s->nodes[n->corrupt_from].id))
				r->corrupt_bans++;
		}
	}
	r->all_stayers_finished = r->stayers_finished == r->stayers;
	for (uint32_t c = 0; c < s->nchunks; c++)
		for (uint32_t i = 0; i < s->nnodes; i++)
			if (s->nodes[i].state != NS_GONE && !s->nodes[i].malicious && has_chunk(&s->nodes[i], c)) {
				r->chunks_held++;
				break;
			}
	r->nchunks = s->nchunks;
	r->mean_s = r->finished ? sum / r->finished : 0;
	r->down_ratio = r->finished ? down / (r->finished * F) : 0;
	r->source_copies = (double)s->nodes[0].up_chunk_bytes / F;
	/* The seed's idle uplink until D (or until it left) */
	double until = r->all_stayers_finished ? r->dist_s * 1e6 : (double)s->now;
	struct snode *seed = &s->nodes[0];
	if (seed->state == NS_GONE && seed->busy_until_us < until)
		until = seed->busy_until_us;
	r->seed_idle_s = (seed->idle_us + (until > seed->busy_until_us ? until - seed->busy_until_us : 0)) / 1e6;
	double up_cap = 0, up_bytes = 0;
	for (uint32_t i = 0; i <= s->ndown; i++) {
		up_cap += (double)s->nodes[i].up_rate;
		up_bytes += (double)s->nodes[i].up_chunk_bytes;
	}
	r->up_util = r->dist_s > 0 ? up_bytes / (up_cap * r->dist_s) : 0;
	r->bound_s = swarm_sim_bound(&s->p);
	r->end_s = s->now / 1e6;
	r->links = s->dials;
	r->link_slots = s->nlinks;
	r->heap_peak = s->evq.cap;
	digest = mix64(digest, r->msgs);
	digest = mix64(digest, r->wire_bytes);
	digest = mix64(digest, r->events);
	r->digest = digest;
}

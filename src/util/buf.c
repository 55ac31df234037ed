#include <string.h>
#include "util/buf.h"

static const uint8_t *take(struct pn_reader *r, size_t n)
{
	if (r->err)
		return NULL;
	if (n > r->len - r->off) {
		r->err = PN_EAGAIN;
		return NULL;
	}
	const uint8_t *p = r->data + r->off;
	r->off += n;
	return p;
}

uint8_t pn_rd_u8(struct pn_reader *r)
{
	const uint8_t *p = take(r, 1);
	return p ? p[0] : 0;
}

uint16_t pn_rd_u16(struct pn_reader *r)
{
	const uint8_t *p = take(r, 2);
	return p ? (uint16_t)((p[0] << 8) | p[1]) : 0;
}

uint32_t pn_rd_u32(struct pn_reader *r)
{
	const uint8_t *p = take(r, 4);
	return p ? pn_get_u32(p) : 0;
}

uint64_t pn_rd_u64(struct pn_reader *r)
{
	const uint8_t *p = take(r, 8);
	return p ? ((uint64_t)pn_get_u32(p) << 32) | pn_get_u32(p + 4) : 0;
}

void pn_rd_bytes(struct pn_reader *r, void *out, size_t n)
{
	const uint8_t *p = take(r, n);
	if (p)
		memcpy(out, p, n);
	else if (n)
		memset(out, 0, n);
}

const uint8_t *pn_rd_ptr(struct pn_reader *r, size_t n)
{
	return take(r, n);
}

uint8_t *pn_wr_reserve(struct pn_writer *w, size_t n)
{
	if (w->err)
		return NULL;
	if (n > w->cap - w->len) {
		w->err = PN_ETOOBIG;
		return NULL;
	}
	uint8_t *p = w->data + w->len;
	w->len += n;
	return p;
}

void pn_wr_u8(struct pn_writer *w, uint8_t v)
{
	uint8_t *p = pn_wr_reserve(w, 1);
	if (p)
		p[0] = v;
}

void pn_wr_u16(struct pn_writer *w, uint16_t v)
{
	uint8_t *p = pn_wr_reserve(w, 2);
	if (p) {
		p[0] = (uint8_t)(v >> 8);
		p[1] = (uint8_t)v;
	}
}

void pn_wr_u32(struct pn_writer *w, uint32_t v)
{
	uint8_t *p = pn_wr_reserve(w, 4);
	if (p)
		pn_put_u32(p, v);
}

void pn_wr_u64(struct pn_writer *w, uint64_t v)
{
	uint8_t *p = pn_wr_reserve(w, 8);
	if (p) {
		pn_put_u32(p, (uint32_t)(v >> 32));
		pn_put_u32(p + 4, (uint32_t)v);
	}
}

void pn_wr_bytes(struct pn_writer *w, const void *src, size_t n)
{
	uint8_t *p = pn_wr_reserve(w, n);
	if (p && n)
		memcpy(p, src, n);
}

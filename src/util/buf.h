/* Bounds-checked byte reader and writer.
 *
 * Untrusted bytes are read only through struct pn_reader. Errors are sticky:
 * once a read runs past the end, err is set, every later read returns zeros,
 * and the decoder checks err once at the end. Integers are big-endian.
 */
#ifndef PN_UTIL_BUF_H
#define PN_UTIL_BUF_H
#ifndef PN_INTERNAL
#error "an internal header of libpeernet: a program includes <peernet.h> only"
#endif

#include <stddef.h>
#include <stdint.h>
#include "peernet.h"

struct pn_reader {
	const uint8_t *data;
	size_t len;
	size_t off;
	int err; /* 0, or PN_EAGAIN after an over-read, or a code set by pn_rd_fail */
};

static inline void pn_rd_init(struct pn_reader *r, const void *data, size_t len)
{
	r->data = (const uint8_t *)data;
	r->len = len;
	r->off = 0;
	r->err = 0;
}
static inline size_t pn_rd_left(const struct pn_reader *r) { return r->err ? 0 : r->len - r->off; }
static inline void pn_rd_fail(struct pn_reader *r, int err) { if (!r->err) r->err = err; }

uint8_t pn_rd_u8(struct pn_reader *r);
uint16_t pn_rd_u16(struct pn_reader *r);
uint32_t pn_rd_u32(struct pn_reader *r);
uint64_t pn_rd_u64(struct pn_reader *r);
/* Copies n bytes into out (zero-fills out on error). */
void pn_rd_bytes(struct pn_reader *r, void *out, size_t n);
/* Returns a pointer to the next n bytes inside the buffer and skips them,
 * or NULL (and sets err) if fewer remain. Valid as long as the buffer is. */
const uint8_t *pn_rd_ptr(struct pn_reader *r, size_t n);

struct pn_writer {
	uint8_t *data;
	size_t cap;
	size_t len;
	int err; /* 0, or PN_ETOOBIG after an overflow */
};

static inline void pn_wr_init(struct pn_writer *w, void *data, size_t cap)
{
	w->data = (uint8_t *)data;
	w->cap = cap;
	w->len = 0;
	w->err = 0;
}
void pn_wr_u8(struct pn_writer *w, uint8_t v);
void pn_wr_u16(struct pn_writer *w, uint16_t v);
void pn_wr_u32(struct pn_writer *w, uint32_t v);
void pn_wr_u64(struct pn_writer *w, uint64_t v);
void pn_wr_bytes(struct pn_writer *w, const void *p, size_t n);
/* Reserves n bytes and returns where they start (NULL on overflow). */
uint8_t *pn_wr_reserve(struct pn_writer *w, size_t n);

/* Plain big-endian helpers for trusted, already-sized buffers. */
static inline void pn_put_u32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}
static inline uint32_t pn_get_u32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

#endif

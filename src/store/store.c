/* The content store in a data directory: complete objects with their .meta
 * files, an index by content ID, uploads in progress, and a small cache of
 * open descriptors for serving chunks. The store is used from one thread. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>
#include "store/store.h"
#include "store/store_int.h"
#include "util/log.h"

#define STORE_DIR_MODE 0700
#define OBJECT_FILE_MODE 0644
#define OBJECTS_DIR "objects"
#define INCOMING_DIR "incoming"
#define META_SUFFIX ".meta"
#define PART_SUFFIX ".part"
#define STATE_SUFFIX ".state"
#define ADD_TEMPLATE "add-XXXXXX"
#define STORE_FD_CACHE 32          /* open object descriptors kept */
#define STORE_MAX_PUTS 256         /* uploads in progress at once */
#define TABLE_MIN_SLOTS 64         /* index slots; kept at most half full */

struct put_entry {
	struct store_partial *partial;
	uint32_t refs;
};

struct fd_slot {
	const struct store_object *object; /* NULL if the slot is free */
	int fd;
	uint64_t last_used;
};

struct store {
	char *objects_dir;
	char *incoming_dir;
	struct store_object **objects; /* insertion order; each owned */
	size_t count;
	size_t cap;
	uint32_t *table;               /* object index + 1, 0 = empty; linear probing */
	size_t table_slots;            /* power of two */
	uint64_t hash_key[2];          /* random per store: probing cannot be steered */
	uint64_t total_bytes;
	uint64_t next_added;
	struct fd_slot fds[STORE_FD_CACHE];
	uint64_t fd_clock;
	struct put_entry puts[STORE_MAX_PUTS];
	size_t nputs;
	struct pn_logger log;          /* a copy of the opener's; cb NULL: silent */
};

/* ---- index ---- */

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	x ^= x >> 31;
	return x;
}

static size_t cid_slot(const struct store *s, const struct pn_cid *cid)
{
	uint64_t a, b;

	memcpy(&a, cid->root, sizeof a);
	memcpy(&b, cid->root + sizeof a, sizeof b);
	return (size_t)(mix64(a ^ s->hash_key[0]) ^ mix64(b ^ s->hash_key[1] ^ cid->size)) & (s->table_slots - 1);
}

static bool cid_equal(const struct pn_cid *a, const struct pn_cid *b)
{
	return a->size == b->size && memcmp(a->root, b->root, PN_HASH_BYTES) == 0;
}

static void table_insert(struct store *s, uint32_t index)
{
	size_t slot = cid_slot(s, &s->objects[index]->cid);

	while (s->table[slot])
		slot = (slot + 1) & (s->table_slots - 1);
	s->table[slot] = index + 1;
}

/* Makes room for one more object, so that adding it cannot fail. */
static int index_reserve(struct store *s)
{
	if (s->count == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : TABLE_MIN_SLOTS / 2;
		struct store_object **objects = realloc(s->objects, cap * sizeof *objects);

		if (!objects)
			return PN_ENOMEM;
		s->objects = objects;
		s->cap = cap;
	}
	if ((s->count + 1) * 2 > s->table_slots) {
		size_t slots = s->table_slots ? s->table_slots * 2 : TABLE_MIN_SLOTS;
		uint32_t *table = calloc(slots, sizeof *table);

		if (!table)
			return PN_ENOMEM;
		free(s->table);
		s->table = table;
		s->table_slots = slots;
		for (size_t i = 0; i < s->count; i++)
			table_insert(s, (uint32_t)i);
	}
	return 0;
}

/* Takes ownership of o; index_reserve() must have succeeded. */
static void index_add(struct store *s, struct store_object *o)
{
	o->added = s->next_added++;
	s->objects[s->count] = o;
	table_insert(s, (uint32_t)s->count);
	s->count++;
	s->total_bytes += o->cid.size;
}

static void object_free(struct store_object *o)
{
	if (o) {
		free(o->hashes);
		free(o);
	}
}

/* A new object; copies nothing but takes ownership of hashes on success. */
static struct store_object *object_new(const struct pn_cid *cid, const char *name, uint8_t *hashes)
{
	struct store_object *o = calloc(1, sizeof *o);

	if (!o)
		return NULL;
	o->cid = *cid;
	snprintf(o->name, sizeof o->name, "%s", name ? name : "");
	o->nchunks = pn_cid_chunks(cid);
	o->hashes = hashes;
	return o;
}

size_t store_count(const struct store *s) { return s->count; }
uint64_t store_total_bytes(const struct store *s) { return s->total_bytes; }

const struct store_object *store_at(const struct store *s, size_t i)
{
	return i < s->count ? s->objects[i] : NULL;
}

const struct store_object *store_get(const struct store *s, const struct pn_cid *cid)
{
	size_t slot;

	if (!s->table_slots)
		return NULL;
	slot = cid_slot(s, cid);
	while (s->table[slot]) {
		const struct store_object *o = s->objects[s->table[slot] - 1];

		if (cid_equal(&o->cid, cid))
			return o;
		slot = (slot + 1) & (s->table_slots - 1);
	}
	return NULL;
}

/* ---- paths ---- */

/* objects/<cid><suffix> or incoming/<cid><suffix>; malloc'd, NULL on ENOMEM. */
static char *cid_path(const char *dir, const struct pn_cid *cid, const char *suffix)
{
	char cidstr[PN_CID_STR_LEN + 1];

	pn_cid_format(cid, cidstr);
	return store_path_join(dir, cidstr, suffix);
}

static int make_dir(const char *path)
{
	struct stat st;

	if (mkdir(path, STORE_DIR_MODE) < 0 && errno != EEXIST)
		return store_err_open(errno);
	if (stat(path, &st) < 0)
		return store_err_open(errno);
	return S_ISDIR(st.st_mode) ? 0 : PN_EEXIST;
}

/* ---- loading ---- */

struct found_meta {
	char cidstr[PN_CID_STR_LEN + 1];
	struct timespec mtime;
};

static int found_cmp(const void *a, const void *b)
{
	const struct found_meta *x = a, *y = b;

	if (x->mtime.tv_sec != y->mtime.tv_sec)
		return x->mtime.tv_sec < y->mtime.tv_sec ? -1 : 1;
	if (x->mtime.tv_nsec != y->mtime.tv_nsec)
		return x->mtime.tv_nsec < y->mtime.tv_nsec ? -1 : 1;
	return strcmp(x->cidstr, y->cidstr);
}

/* Loads objects/<cidstr>.meta and checks the object file beside it.
 * Returns 0 (added, or skipped with a warning) or PN_ENOMEM. */
static int load_one(struct store *s, const char *cidstr)
{
	char *meta_path = NULL, *data_path = NULL;
	uint8_t *buf = NULL, *hashes = NULL;
	char name[PN_NAME_MAX + 1];
	struct store_object *o;
	struct pn_cid cid, parsed;
	struct stat st;
	size_t len = 0;
	int err;

	if (pn_cid_parse(cidstr, &cid) != 0) {
		PN_LOGW(&s->log, "store: %s/%s%s: not a content ID, skipped", s->objects_dir, cidstr, META_SUFFIX);
		return 0;
	}
	meta_path = store_path_join(s->objects_dir, cidstr, META_SUFFIX);
	data_path = store_path_join(s->objects_dir, cidstr, NULL);
	if (!meta_path || !data_path) {
		err = PN_ENOMEM;
		goto out;
	}
	err = store_read_file(meta_path, store_meta_max_len(pn_cid_chunks(&cid)), &buf, &len);
	if (!err)
		err = store_meta_parse(buf, len, &parsed, name, &hashes);
	if (err == PN_ENOMEM)
		goto out;
	if (err) {
		PN_LOGW(&s->log, "store: %s: %s, skipped", meta_path, pn_strerror(err));
		err = 0;
		goto out;
	}
	if (!cid_equal(&cid, &parsed)) {
		PN_LOGW(&s->log, "store: %s describes another content ID, skipped", meta_path);
		goto out;
	}
	if (stat(data_path, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size != cid.size) {
		PN_LOGW(&s->log, "store: %s is missing or has the wrong size, skipped", data_path);
		goto out;
	}
	if (store_get(s, &cid))
		goto out;
	err = index_reserve(s);
	if (err)
		goto out;
	o = object_new(&cid, name, hashes);
	if (!o) {
		err = PN_ENOMEM;
		goto out;
	}
	hashes = NULL;
	index_add(s, o);
out:
	free(hashes);
	free(buf);
	free(data_path);
	free(meta_path);
	return err;
}

/* Every objects/<cid>.meta, oldest first so listing order survives a restart. */
static int load_all(struct store *s)
{
	struct found_meta *found = NULL, *grown;
	size_t nfound = 0, cap = 0;
	struct dirent *de;
	DIR *d;
	int err = 0;

	d = opendir(s->objects_dir);
	if (!d)
		return store_err_open(errno);
	while ((de = readdir(d)) != NULL) {
		size_t len = strlen(de->d_name);
		struct stat st;

		if (len != PN_CID_STR_LEN + strlen(META_SUFFIX) ||
		    strcmp(de->d_name + PN_CID_STR_LEN, META_SUFFIX) != 0)
			continue;
		if (fstatat(dirfd(d), de->d_name, &st, 0) < 0)
			continue;
		if (nfound == cap) {
			cap = cap ? cap * 2 : TABLE_MIN_SLOTS;
			grown = realloc(found, cap * sizeof *found);
			if (!grown) {
				err = PN_ENOMEM;
				goto out;
			}
			found = grown;
		}
		memcpy(found[nfound].cidstr, de->d_name, PN_CID_STR_LEN);
		found[nfound].cidstr[PN_CID_STR_LEN] = '\0';
		found[nfound].mtime = st.st_mtim;
		nfound++;
	}
	if (nfound)
		qsort(found, nfound, sizeof *found, found_cmp);
	for (size_t i = 0; i < nfound && !err; i++)
		err = load_one(s, found[i].cidstr);
out:
	free(found);
	closedir(d);
	return err;
}

/* Removes incoming/add-* copies left by a crash during store_add_local. */
static void remove_stale_adds(const struct store *s)
{
	size_t prefix = strlen(ADD_TEMPLATE) - strlen("XXXXXX");
	struct dirent *de;
	DIR *d = opendir(s->incoming_dir);

	if (!d)
		return;
	while ((de = readdir(d)) != NULL)
		if (!strncmp(de->d_name, ADD_TEMPLATE, prefix) && strlen(de->d_name) == strlen(ADD_TEMPLATE))
			unlinkat(dirfd(d), de->d_name, 0);
	closedir(d);
}

int store_open(const char *dir, struct store **out)
{
	return store_open_log(dir, NULL, out);
}

/* Resources: s and its two paths; the ladder frees whatever was made. */
int store_open_log(const char *dir, const struct pn_logger *lg, struct store **out)
{
	struct store *s;
	int err;

	if (!dir || !out)
		return PN_EINVAL;
	s = calloc(1, sizeof *s);
	if (!s)
		return PN_ENOMEM;
	if (lg)
		s->log = *lg;
	for (size_t i = 0; i < STORE_FD_CACHE; i++)
		s->fds[i].fd = -1;
	if (getrandom(s->hash_key, sizeof s->hash_key, 0) != (ssize_t)sizeof s->hash_key) {
		err = PN_EIO;
		goto fail;
	}
	s->objects_dir = store_path_join(dir, OBJECTS_DIR, NULL);
	s->incoming_dir = store_path_join(dir, INCOMING_DIR, NULL);
	if (!s->objects_dir || !s->incoming_dir) {
		err = PN_ENOMEM;
		goto fail;
	}
	err = make_dir(dir);
	if (!err)
		err = make_dir(s->objects_dir);
	if (!err)
		err = make_dir(s->incoming_dir);
	if (err)
		goto fail;
	remove_stale_adds(s);
	err = index_reserve(s);
	if (!err)
		err = load_all(s);
	if (err)
		goto fail;
	*out = s;
	return 0;
fail:
	store_close(s);
	return err;
}

void store_close(struct store *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < STORE_FD_CACHE; i++)
		if (s->fds[i].fd >= 0)
			close(s->fds[i].fd);
	for (size_t i = 0; i < s->nputs; i++) {
		PN_LOGW(&s->log, "store: closing with an upload still held (%u references)", s->puts[i].refs);
		store_partial_free(s->puts[i].partial);
	}
	for (size_t i = 0; i < s->count; i++)
		object_free(s->objects[i]);
	free(s->objects);
	free(s->table);
	free(s->objects_dir);
	free(s->incoming_dir);
	free(s);
}

/* ---- serving ---- */

/* A descriptor for o from the cache, opening it (and evicting the least
 * recently used) on a miss. The cache owns the descriptor. */
static int object_fd(struct store *s, const struct store_object *o)
{
	struct fd_slot *victim = &s->fds[0];
	char *path;
	int fd;

	for (size_t i = 0; i < STORE_FD_CACHE; i++) {
		struct fd_slot *slot = &s->fds[i];

		if (slot->object == o) {
			slot->last_used = ++s->fd_clock;
			return slot->fd;
		}
		if (!slot->object || (victim->object && slot->last_used < victim->last_used))
			victim = slot;
	}
	path = cid_path(s->objects_dir, &o->cid, NULL);
	if (!path)
		return PN_ENOMEM;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	free(path);
	if (fd < 0)
		return errno == ENOENT ? PN_ENOTFOUND : PN_EIO;
	if (victim->fd >= 0)
		close(victim->fd);
	victim->object = o;
	victim->fd = fd;
	victim->last_used = ++s->fd_clock;
	return fd;
}

int store_read_chunk(struct store *s, const struct store_object *o, uint32_t index, uint8_t *buf, uint32_t *len)
{
	uint32_t clen;
	int fd, err;

	if (!o || index >= o->nchunks)
		return PN_EINVAL;
	fd = object_fd(s, o);
	if (fd < 0)
		return fd;
	clen = pn_cid_chunk_len(&o->cid, index);
	err = store_read_all(fd, buf, clen, (uint64_t)index * PN_CHUNK_SIZE);
	if (err) {
		PN_LOGW(&s->log, "store: object %s is shorter than its ID says", o->name);
		return err;
	}
	*len = clen;
	return 0;
}

/* ---- uploads ---- */

static struct put_entry *put_find(struct store *s, const struct store_partial *p)
{
	for (size_t i = 0; i < s->nputs; i++)
		if (s->puts[i].partial == p)
			return &s->puts[i];
	return NULL;
}

static struct put_entry *put_find_cid(struct store *s, const struct pn_cid *cid)
{
	for (size_t i = 0; i < s->nputs; i++)
		if (cid_equal(store_partial_cid(s->puts[i].partial), cid))
			return &s->puts[i];
	return NULL;
}

/* Drops one reference; at zero closes the partial, or deletes its files if
 * the object became complete some other way. */
static void put_unref(struct store *s, struct put_entry *e)
{
	struct store_partial *p = e->partial;

	if (--e->refs > 0)
		return;
	/* Nothing worth resuming (no verified chunk), or already complete: drop the files. */
	if (!store_partial_finalized(p) &&
	    (store_get(s, store_partial_cid(p)) || store_partial_have_count(p) == 0))
		store_partial_discard(p);
	else
		store_partial_free(p);
	*e = s->puts[--s->nputs];
}

int store_put_begin(struct store *s, const struct pn_cid *cid, const char *name, struct store_partial **out)
{
	char *data_path = NULL, *state_path = NULL;
	struct store_partial *p = NULL;
	struct put_entry *e;
	int err;

	if (!cid || !out)
		return PN_EINVAL;
	if (cid->size > PN_MAX_FILE_SIZE)
		return PN_ETOOBIG;
	if (name && !store_name_valid(name, strlen(name)))
		return PN_EINVAL;
	if (store_get(s, cid))
		return PN_EEXIST;
	e = put_find_cid(s, cid);
	if (!e) {
		if (s->nputs == STORE_MAX_PUTS)
			return PN_ELIMIT;
		data_path = cid_path(s->incoming_dir, cid, PART_SUFFIX);
		state_path = cid_path(s->incoming_dir, cid, STATE_SUFFIX);
		if (!data_path || !state_path) {
			err = PN_ENOMEM;
			goto out;
		}
		err = store_partial_open_log(data_path, state_path, cid, NULL, &s->log, &p);
		if (err)
			goto out;
		e = &s->puts[s->nputs++];
		e->partial = p;
		e->refs = 0;
	}
	/* The first uploader to give a name names the object. */
	if (name && name[0] && !store_partial_name(e->partial)[0]) {
		err = store_partial_set_name(e->partial, name);
		if (err)
			PN_LOGW(&s->log, "store: cannot record the name of an upload: %s", pn_strerror(err));
	}
	e->refs++;
	*out = e->partial;
	err = 0;
out:
	free(data_path);
	free(state_path);
	return err;
}

void store_put_release(struct store *s, struct store_partial *p)
{
	struct put_entry *e;

	if (!p)
		return;
	e = put_find(s, p);
	if (!e) {
		PN_LOGE(&s->log, "store: release of an upload the store does not hold");
		return;
	}
	put_unref(s, e);
}

/* Resources: the new object (with a copy of the hash list), the meta and
 * object paths; the meta file is removed again if the move fails. */
int store_put_finish(struct store *s, struct store_partial *p, const struct store_object **out)
{
	const struct pn_cid *cid;
	const struct store_object *done;
	struct store_object *o = NULL;
	char *meta_path = NULL, *data_path = NULL;
	uint8_t *meta = NULL, *hashes = NULL;
	size_t meta_len = 0, hashes_len;
	struct put_entry *e;
	int err;

	e = put_find(s, p);
	if (!e)
		return PN_EINVAL;
	cid = store_partial_cid(p);
	done = store_get(s, cid);
	if (done) {
		/* Another uploader of the same partial finished it. */
		put_unref(s, e);
		if (out)
			*out = done;
		return 0;
	}
	if (store_partial_have_count(p) != store_partial_nchunks(p))
		return PN_EAGAIN;
	hashes_len = (size_t)store_partial_nchunks(p) * PN_HASH_BYTES;
	hashes = malloc(hashes_len);
	meta_path = cid_path(s->objects_dir, cid, META_SUFFIX);
	data_path = cid_path(s->objects_dir, cid, NULL);
	if (!hashes || !meta_path || !data_path) {
		err = PN_ENOMEM;
		goto out;
	}
	memcpy(hashes, store_partial_hashes(p), hashes_len);
	o = object_new(cid, store_partial_name(p), hashes);
	if (!o) {
		err = PN_ENOMEM;
		goto out;
	}
	hashes = NULL;
	err = index_reserve(s);
	if (err)
		goto out;
	err = store_meta_encode(&o->cid, o->name, o->hashes, &meta, &meta_len);
	if (err)
		goto out;
	/* .meta first: a crash before the move leaves a .meta that store_open
	 * skips (no object file), never an object without its hash list. */
	err = store_write_file_atomic(meta_path, meta, meta_len, OBJECT_FILE_MODE);
	if (err)
		goto out;
	/* Not in the index, so a file already there is a leftover: replace it. */
	err = store_partial_finalize(p, data_path, true);
	if (err) {
		unlink(meta_path);
		goto out;
	}
	index_add(s, o);
	if (out)
		*out = o;
	o = NULL;
	put_unref(s, e);
out:
	object_free(o);
	free(hashes);
	free(meta);
	free(meta_path);
	free(data_path);
	return err;
}

/* ---- adding a local file ---- */

static const char *base_name(const char *path)
{
	const char *slash = strrchr(path, '/');

	return slash ? slash + 1 : path;
}

/* Resources: the source fd, the temporary copy (fd and path), the object,
 * the meta buffer and paths; one ladder releases them. */
int store_add_local(struct store *s, const char *path, const char *name, const struct store_object **out)
{
	char *tmp_path = NULL, *meta_path = NULL, *data_path = NULL;
	uint8_t *hashes = NULL, *meta = NULL;
	struct store_object *o = NULL;
	const struct store_object *existing;
	struct pn_cid cid;
	struct stat st;
	size_t meta_len = 0;
	int src = -1, tmp = -1, err;

	if (!path)
		return PN_EINVAL;
	if (!name)
		name = base_name(path);
	if (!name[0] || !store_name_valid(name, strlen(name)))
		return PN_EINVAL;
	src = open(path, O_RDONLY | O_CLOEXEC);
	if (src < 0)
		return store_err_open(errno);
	if (fstat(src, &st) < 0) {
		err = PN_EIO;
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		err = PN_EINVAL;
		goto out;
	}
	if ((uint64_t)st.st_size > PN_MAX_FILE_SIZE) {
		err = PN_ETOOBIG;
		goto out;
	}
	tmp_path = store_path_join(s->incoming_dir, ADD_TEMPLATE, NULL);
	if (!tmp_path) {
		err = PN_ENOMEM;
		goto out;
	}
	tmp = mkostemp(tmp_path, O_CLOEXEC);
	if (tmp < 0) {
		err = store_err_open(errno);
		free(tmp_path);
		tmp_path = NULL;
		goto out;
	}
	if (fchmod(tmp, OBJECT_FILE_MODE) < 0) {
		err = PN_EIO;
		goto out;
	}
	err = store_copy_fd(src, tmp, (uint64_t)st.st_size);
	if (err)
		goto out;
	/* Hash the copy, which nobody else writes to. */
	err = store_hash_fd(tmp, (uint64_t)st.st_size, &cid, &hashes);
	if (err)
		goto out;
	existing = store_get(s, &cid);
	if (existing) {
		if (out)
			*out = existing;
		err = PN_EEXIST;
		goto out;
	}
	if (fsync(tmp) < 0) {
		err = store_err_write(errno);
		goto out;
	}
	o = object_new(&cid, name, hashes);
	if (!o) {
		err = PN_ENOMEM;
		goto out;
	}
	hashes = NULL;
	meta_path = cid_path(s->objects_dir, &cid, META_SUFFIX);
	data_path = cid_path(s->objects_dir, &cid, NULL);
	if (!meta_path || !data_path) {
		err = PN_ENOMEM;
		goto out;
	}
	err = index_reserve(s);
	if (!err)
		err = store_meta_encode(&cid, o->name, o->hashes, &meta, &meta_len);
	if (!err)
		err = store_write_file_atomic(meta_path, meta, meta_len, OBJECT_FILE_MODE);
	if (err)
		goto out;
	err = store_move(tmp_path, data_path, true);
	if (err) {
		unlink(meta_path);
		goto out;
	}
	free(tmp_path);
	tmp_path = NULL; /* moved: nothing to remove */
	err = store_fsync_dir(s->objects_dir);
	if (err)
		PN_LOGW(&s->log, "store: cannot sync %s: %s", s->objects_dir, pn_strerror(err));
	err = 0;
	index_add(s, o);
	if (out)
		*out = o;
	o = NULL;
out:
	if (tmp >= 0)
		close(tmp);
	if (tmp_path) {
		unlink(tmp_path);
		free(tmp_path);
	}
	if (src >= 0)
		close(src);
	object_free(o);
	free(hashes);
	free(meta);
	free(meta_path);
	free(data_path);
	return err;
}

int store_remove(struct store *s, const struct pn_cid *cid)
{
	size_t i;
	for (i = 0; i < s->count; i++)
		if (cid_equal(&s->objects[i]->cid, cid))
			break;
	if (i == s->count)
		return PN_ENOTFOUND;
	char *meta_path = cid_path(s->objects_dir, cid, META_SUFFIX);
	char *data_path = cid_path(s->objects_dir, cid, NULL);
	if (!meta_path || !data_path) {
		free(meta_path);
		free(data_path);
		return PN_ENOMEM;
	}
	if (unlink(meta_path) != 0 && errno != ENOENT) {
		PN_LOGW(&s->log, "store: cannot remove %s: %s", meta_path, strerror(errno));
		free(meta_path);
		free(data_path);
		return PN_EIO;
	}
	if (unlink(data_path) != 0 && errno != ENOENT)
		PN_LOGW(&s->log, "store: cannot remove %s: %s (left behind)", data_path, strerror(errno));
	free(meta_path);
	free(data_path);
	struct store_object *o = s->objects[i];
	s->total_bytes -= o->cid.size;
	memmove(&s->objects[i], &s->objects[i + 1], (s->count - i - 1) * sizeof *s->objects);
	s->count--;
	object_free(o);
	memset(s->table, 0, s->table_slots * sizeof *s->table);
	for (size_t k = 0; k < s->count; k++)
		table_insert(s, (uint32_t)k);
	return PN_OK;
}

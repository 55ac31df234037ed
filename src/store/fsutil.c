/* File-system helpers shared by the partial transfers and the content store. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "store/store_int.h"

#define COPY_BLOCK (1024u * 1024u)

int store_err_write(int e)
{
	return (e == ENOSPC || e == EDQUOT) ? PN_ENOSPC : PN_EIO;
}

int store_err_open(int e)
{
	switch (e) {
	case ENOSPC:
	case EDQUOT:
		return PN_ENOSPC;
	case EACCES:
	case EPERM:
	case EROFS:
		return PN_EACCES;
	case ENOENT:
	case ENOTDIR:
		return PN_ENOTFOUND;
	case EEXIST:
		return PN_EEXIST;
	case ELOOP: /* O_NOFOLLOW met a symbolic link */
		return PN_ELINK;
	case ENOMEM:
		return PN_ENOMEM;
	default:
		return PN_EIO;
	}
}

int store_write_all(int fd, const void *buf, size_t len, uint64_t off)
{
	const uint8_t *p = buf;

	while (len > 0) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return store_err_write(errno);
		}
		if (n == 0)
			return PN_EIO;
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

int store_read_all(int fd, void *buf, size_t len, uint64_t off)
{
	uint8_t *p = buf;

	while (len > 0) {
		ssize_t n = pread(fd, p, len, (off_t)off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return PN_EIO;
		}
		if (n == 0)
			return PN_EIO; /* the file is shorter than expected */
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

int store_fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int err = 0;

	if (fd < 0)
		return store_err_open(errno);
	if (fsync(fd) < 0 && errno != EINVAL)
		err = PN_EIO;
	close(fd);
	return err;
}

int store_fsync_parent(const char *path)
{
	const char *slash = strrchr(path, '/');
	char dir[PATH_MAX];

	if (!slash)
		return store_fsync_dir(".");
	if (slash == path)
		return store_fsync_dir("/");
	if ((size_t)(slash - path) >= sizeof dir)
		return PN_ETOOBIG;
	memcpy(dir, path, (size_t)(slash - path));
	dir[slash - path] = '\0';
	return store_fsync_dir(dir);
}

int store_read_file(const char *path, size_t max, uint8_t **out, size_t *len)
{
	struct stat st;
	uint8_t *buf = NULL;
	int fd, err;

	/* O_NONBLOCK: a FIFO in place of the file must not hang us. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW);
	if (fd < 0)
		return store_err_open(errno);
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		err = PN_EIO;
		goto out;
	}
	if ((uint64_t)st.st_size > max) {
		err = PN_ETOOBIG;
		goto out;
	}
	buf = malloc(st.st_size ? (size_t)st.st_size : 1);
	if (!buf) {
		err = PN_ENOMEM;
		goto out;
	}
	err = store_read_all(fd, buf, (size_t)st.st_size, 0);
	if (err) {
		free(buf);
		goto out;
	}
	*out = buf;
	*len = (size_t)st.st_size;
out:
	close(fd);
	return err;
}

int store_write_file_atomic(const char *path, const void *buf, size_t len, int mode)
{
	char *tmp = store_path_join(path, "", STORE_TMP_SUFFIX);
	int fd = -1, err;

	if (!tmp)
		return PN_ENOMEM;
	/* path.tmp is ours: a stale one from a crash is removed (if it is a
	 * symbolic link, the link itself) and the file made afresh, never opened
	 * through a link someone planted there. */
	if (unlink(tmp) < 0 && errno != ENOENT) {
		err = store_err_open(errno);
		goto out_free;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
	if (fd < 0) {
		err = store_err_open(errno);
		goto out_free;
	}
	err = store_write_all(fd, buf, len, 0);
	if (err)
		goto out_unlink;
	if (fsync(fd) < 0) {
		err = store_err_write(errno);
		goto out_unlink;
	}
	if (close(fd) < 0) {
		fd = -1;
		err = store_err_write(errno);
		goto out_unlink;
	}
	fd = -1;
	if (rename(tmp, path) < 0) {
		err = store_err_write(errno);
		goto out_unlink;
	}
	err = store_fsync_parent(path);
	goto out_free;
out_unlink:
	if (fd >= 0)
		close(fd);
	unlink(tmp);
out_free:
	free(tmp);
	return err;
}

/* The file system has no RENAME_NOREPLACE: claim `to` with a hard link, or
 * failing that with an empty O_EXCL placeholder that the rename replaces. */
static int move_noreplace_fallback(const char *from, const char *to)
{
	int fd;

	if (link(from, to) == 0) {
		if (unlink(from) < 0)
			return PN_EIO;
		return 0;
	}
	if (errno == EEXIST)
		return PN_EEXIST;
	if (errno != EPERM && errno != ENOTSUP && errno != EOPNOTSUPP && errno != ENOSYS)
		return store_err_write(errno);
	fd = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0)
		return errno == EEXIST ? PN_EEXIST : store_err_open(errno);
	close(fd);
	if (rename(from, to) < 0) {
		int err = store_err_write(errno);

		unlink(to);
		return err;
	}
	return 0;
}

int store_move(const char *from, const char *to, bool overwrite)
{
	if (overwrite)
		return rename(from, to) < 0 ? store_err_write(errno) : 0;
	if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno == EEXIST)
		return PN_EEXIST;
	if (errno == EINVAL || errno == ENOSYS || errno == ENOTSUP || errno == EOPNOTSUPP)
		return move_noreplace_fallback(from, to);
	return store_err_write(errno);
}

static int copy_plain(int src_fd, int dst_fd, uint64_t off, uint64_t len)
{
	uint8_t *buf = malloc(COPY_BLOCK);
	int err = 0;

	if (!buf)
		return PN_ENOMEM;
	while (off < len) {
		size_t want = len - off < COPY_BLOCK ? (size_t)(len - off) : COPY_BLOCK;

		err = store_read_all(src_fd, buf, want, off);
		if (!err)
			err = store_write_all(dst_fd, buf, want, off);
		if (err)
			break;
		off += want;
	}
	free(buf);
	return err;
}

int store_copy_fd(int src_fd, int dst_fd, uint64_t len)
{
	loff_t in_off = 0, out_off = 0;

	while ((uint64_t)in_off < len) {
		size_t want = len - (uint64_t)in_off > SSIZE_MAX / 2 ? SSIZE_MAX / 2 : (size_t)(len - (uint64_t)in_off);
		ssize_t n = copy_file_range(src_fd, &in_off, dst_fd, &out_off, want, 0);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EXDEV || errno == ENOSYS || errno == EINVAL || errno == EOPNOTSUPP ||
			    errno == EBADF)
				return copy_plain(src_fd, dst_fd, (uint64_t)in_off, len);
			return store_err_write(errno);
		}
		if (n == 0)
			return PN_EIO; /* the source is shorter than expected */
	}
	return 0;
}

char *store_path_join(const char *dir, const char *file, const char *suffix)
{
	size_t dlen = strlen(dir), flen = strlen(file), slen = suffix ? strlen(suffix) : 0;
	bool sep = flen > 0;
	char *p = malloc(dlen + sep + flen + slen + 1);

	if (!p)
		return NULL;
	memcpy(p, dir, dlen);
	if (sep)
		p[dlen] = '/';
	memcpy(p + dlen + sep, file, flen);
	if (slen)
		memcpy(p + dlen + sep + flen, suffix, slen);
	p[dlen + sep + flen + slen] = '\0';
	return p;
}

#ifndef VAULTFS_CNBD_H
#define VAULTFS_CNBD_H
/* NBD exports (qemu-storage-daemon, qemu-nbd, nbdkit) read through libnbd, opened at run time
 * (dlopen) by the first nbd: disk, as libcurl and librbd are. libnbd's block status reports
 * through a callback and its calls take a struct of callbacks, which Swift cannot build; the
 * extents are collected here. Each call returns 0 or a negative errno. */
#include <stddef.h>
#include <stdint.h>

typedef struct vfs_nbd vfs_nbd;

/* Loads libnbd once. Returns 0, or -1 with why in `error`. */
int vfs_nbd_init(char *error, size_t size);

/* Connects to `uri` (nbd+unix:///EXPORT?socket=PATH, nbd://HOST/EXPORT), asking for the
 * `base:allocation` context and, when `bitmap` is given, `qemu:dirty-bitmap:BITMAP`. On
 * failure, libnbd's message is in `error`. */
int vfs_nbd_connect(const char *uri, const char *bitmap, vfs_nbd **out, char *error, size_t size);
void vfs_nbd_close(vfs_nbd *nbd);

int64_t vfs_nbd_size(vfs_nbd *nbd);
int vfs_nbd_pread(vfs_nbd *nbd, void *buffer, size_t length, uint64_t offset, char *error, size_t size);

/* One extent of a context: `flags` as NBD gives them (base:allocation: 1 hole, 2 zero;
 * a dirty bitmap: 1 dirty). */
typedef struct {
    uint64_t offset;
    uint64_t length;
    uint32_t flags;
} vfs_nbd_extent;

/* The extents of context `which` (0: base:allocation, 1: the dirty bitmap) over the whole
 * export, adjacent ones with the same flags joined, in a malloc'd array (free with free()). */
int vfs_nbd_extents(vfs_nbd *nbd, int which, vfs_nbd_extent **extents, size_t *count, char *error, size_t size);

/* The libnbd built against: Debian's libnbd0. */
#define VFS_LIBNBD "libnbd.so.0"
#endif

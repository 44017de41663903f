#ifndef VAULTFS_CRBD_H
#define VAULTFS_CRBD_H
/* Ceph RBD images read through librbd and librados, opened at run time (dlopen) by the first
 * rbd: disk, as the S3 backend opens libcurl: hosts without Ceph never load them. Each call
 * returns 0 (or a count) or a negative errno, with librbd's or librados's meaning. */
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct vfs_rbd_cluster vfs_rbd_cluster;
typedef struct vfs_rbd_image vfs_rbd_image;

/* Loads librados and librbd once. Returns 0, or -1 with why in `error`. */
int vfs_rbd_init(char *error, size_t size);

/* Connects as client `id` (NULL: admin) with the configuration file `conf` (NULL: Ceph's
 * default search), giving up after `timeout_seconds` when the cluster does not answer, and
 * opens an I/O context on `pool`. On failure returns a negative errno with the step that
 * failed in `error`. */
int vfs_rbd_connect(const char *conf, const char *id, const char *pool, int timeout_seconds,
                    vfs_rbd_cluster **out, char *error, size_t size);
void vfs_rbd_disconnect(vfs_rbd_cluster *cluster);

/* Opens `name` at snapshot `snap` (read-only), or the image itself writable when `snap` is
 * NULL (for making and removing snapshots). */
int vfs_rbd_open(vfs_rbd_cluster *cluster, const char *name, const char *snap, vfs_rbd_image **out);
void vfs_rbd_close(vfs_rbd_image *image);

int vfs_rbd_size(vfs_rbd_image *image, uint64_t *size);
/* Whether the image has fast-diff with a valid object map (then whole-object diffs are cheap). */
int vfs_rbd_fast_diff(vfs_rbd_image *image);
ssize_t vfs_rbd_read(vfs_rbd_image *image, uint64_t offset, size_t length, void *buffer);

/* One extent of a diff: `exists` 0 means discarded (reads as zeros). */
typedef struct {
    uint64_t offset;
    uint64_t length;
    int exists;
} vfs_rbd_extent;

/* The extents of the open snapshot (or image) that differ from snapshot `from` (NULL: every
 * allocated extent), in a malloc'd array (free with free()); `*count` is set. */
int vfs_rbd_diff(vfs_rbd_image *image, const char *from, int whole_object, vfs_rbd_extent **extents, size_t *count);

int vfs_rbd_snap_create(vfs_rbd_image *image, const char *name);
int vfs_rbd_snap_remove(vfs_rbd_image *image, const char *name);
/* The snapshots' names, each ended by a NUL, in one malloc'd buffer (free with free()). */
int vfs_rbd_snap_names(vfs_rbd_image *image, char **names, size_t *length);

/* The libraries built against: Debian's librados2 and librbd1. */
#define VFS_LIBRADOS "librados.so.2"
#define VFS_LIBRBD "librbd.so.1"
#endif

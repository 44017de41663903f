#include "CRbd.h"
#include <rados/librados.h>
#include <rbd/librbd.h>
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* librados and librbd (and the thirty libraries they need) load only for rbd: disks. Only
 * these calls are used, through these pointers. */
static struct {
    int (*create2)(rados_t *, const char *, const char *, uint64_t);
    int (*conf_read_file)(rados_t, const char *);
    int (*conf_set)(rados_t, const char *, const char *);
    int (*connect)(rados_t);
    void (*shutdown)(rados_t);
    int (*ioctx_create)(rados_t, const char *, rados_ioctx_t *);
    void (*ioctx_destroy)(rados_ioctx_t);
    int (*open)(rados_ioctx_t, const char *, rbd_image_t *, const char *);
    int (*open_read_only)(rados_ioctx_t, const char *, rbd_image_t *, const char *);
    int (*close)(rbd_image_t);
    int (*get_size)(rbd_image_t, uint64_t *);
    int (*get_features)(rbd_image_t, uint64_t *);
    int (*get_flags)(rbd_image_t, uint64_t *);
    ssize_t (*read2)(rbd_image_t, uint64_t, size_t, char *, int);
    int (*diff_iterate2)(rbd_image_t, const char *, uint64_t, uint64_t, uint8_t, uint8_t,
                         int (*)(uint64_t, size_t, int, void *), void *);
    int (*snap_create)(rbd_image_t, const char *);
    int (*snap_remove)(rbd_image_t, const char *);
    int (*snap_list)(rbd_image_t, rbd_snap_info_t *, int *);
    void (*snap_list_end)(rbd_snap_info_t *);
} ceph;
/* Empty once both libraries are loaded; otherwise why not. Written only inside pthread_once. */
static char load_error[256] = "librbd was not loaded";
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void load(void) {
    void *rados = dlopen(VFS_LIBRADOS, RTLD_NOW | RTLD_LOCAL);
    void *rbd = rados != NULL ? dlopen(VFS_LIBRBD, RTLD_NOW | RTLD_LOCAL) : NULL;
    if (rbd == NULL) {
        snprintf(load_error, sizeof load_error, "cannot load librbd (%s), which rbd: disks need: install librbd1", dlerror());
        return;
    }
#define FIND(library, field, name) \
    if ((ceph.field = (__typeof__(ceph.field))dlsym(library, name)) == NULL) { \
        snprintf(load_error, sizeof load_error, "the installed librados or librbd has no %s: Ceph 16 or later is needed", name); \
        return; \
    }
    FIND(rados, create2, "rados_create2")
    FIND(rados, conf_read_file, "rados_conf_read_file")
    FIND(rados, conf_set, "rados_conf_set")
    FIND(rados, connect, "rados_connect")
    FIND(rados, shutdown, "rados_shutdown")
    FIND(rados, ioctx_create, "rados_ioctx_create")
    FIND(rados, ioctx_destroy, "rados_ioctx_destroy")
    FIND(rbd, open, "rbd_open")
    FIND(rbd, open_read_only, "rbd_open_read_only")
    FIND(rbd, close, "rbd_close")
    FIND(rbd, get_size, "rbd_get_size")
    FIND(rbd, get_features, "rbd_get_features")
    FIND(rbd, get_flags, "rbd_get_flags")
    FIND(rbd, read2, "rbd_read2")
    FIND(rbd, diff_iterate2, "rbd_diff_iterate2")
    FIND(rbd, snap_create, "rbd_snap_create")
    FIND(rbd, snap_remove, "rbd_snap_remove")
    FIND(rbd, snap_list, "rbd_snap_list")
    FIND(rbd, snap_list_end, "rbd_snap_list_end")
#undef FIND
    load_error[0] = 0;
}

int vfs_rbd_init(char *error, size_t size) {
    pthread_once(&once, load);
    if (load_error[0] == 0) return 0;
    if (error != NULL && size > 0) snprintf(error, size, "%s", load_error);
    return -1;
}

struct vfs_rbd_cluster {
    rados_t rados;
    rados_ioctx_t io;
};

struct vfs_rbd_image {
    rbd_image_t image;
};

int vfs_rbd_connect(const char *conf, const char *id, const char *pool, int timeout_seconds,
                    vfs_rbd_cluster **out, char *error, size_t size) {
    if (vfs_rbd_init(error, size) != 0) return -ENOSYS;
    char user[256];
    snprintf(user, sizeof user, "client.%s", id != NULL ? id : "admin");
    rados_t rados;
    int r = ceph.create2(&rados, "ceph", user, 0);
    if (r < 0) { snprintf(error, size, "cannot start a Ceph client as %s", user); return r; }
    r = ceph.conf_read_file(rados, conf);
    if (r < 0) {
        snprintf(error, size, "cannot read the Ceph configuration %s", conf != NULL ? conf : "(Ceph's default places)");
        ceph.shutdown(rados);
        return r;
    }
    /* Bounded: an unreachable cluster fails the backup instead of hanging it. */
    char seconds[32];
    snprintf(seconds, sizeof seconds, "%d", timeout_seconds);
    ceph.conf_set(rados, "client_mount_timeout", seconds);
    ceph.conf_set(rados, "rados_mon_op_timeout", seconds);
    ceph.conf_set(rados, "rados_osd_op_timeout", seconds);
    r = ceph.connect(rados);
    if (r < 0) {
        snprintf(error, size, "cannot reach the Ceph cluster as %s", user);
        ceph.shutdown(rados);
        return r;
    }
    rados_ioctx_t io;
    r = ceph.ioctx_create(rados, pool, &io);
    if (r < 0) {
        snprintf(error, size, "cannot open pool '%s'", pool);
        ceph.shutdown(rados);
        return r;
    }
    vfs_rbd_cluster *cluster = malloc(sizeof *cluster);
    if (cluster == NULL) { ceph.ioctx_destroy(io); ceph.shutdown(rados); return -ENOMEM; }
    cluster->rados = rados;
    cluster->io = io;
    *out = cluster;
    return 0;
}

void vfs_rbd_disconnect(vfs_rbd_cluster *cluster) {
    if (cluster == NULL) return;
    ceph.ioctx_destroy(cluster->io);
    ceph.shutdown(cluster->rados);
    free(cluster);
}

int vfs_rbd_open(vfs_rbd_cluster *cluster, const char *name, const char *snap, vfs_rbd_image **out) {
    rbd_image_t image;
    int r = snap != NULL ? ceph.open_read_only(cluster->io, name, &image, snap) : ceph.open(cluster->io, name, &image, NULL);
    if (r < 0) return r;
    vfs_rbd_image *handle = malloc(sizeof *handle);
    if (handle == NULL) { ceph.close(image); return -ENOMEM; }
    handle->image = image;
    *out = handle;
    return 0;
}

void vfs_rbd_close(vfs_rbd_image *image) {
    if (image == NULL) return;
    ceph.close(image->image);
    free(image);
}

int vfs_rbd_size(vfs_rbd_image *image, uint64_t *size) { return ceph.get_size(image->image, size); }

int vfs_rbd_fast_diff(vfs_rbd_image *image) {
    uint64_t features = 0, flags = 0;
    if (ceph.get_features(image->image, &features) < 0 || ceph.get_flags(image->image, &flags) < 0) return 0;
    return (features & RBD_FEATURE_FAST_DIFF) != 0 && (flags & RBD_FLAG_FAST_DIFF_INVALID) == 0
           && (flags & RBD_FLAG_OBJECT_MAP_INVALID) == 0;
}

ssize_t vfs_rbd_read(vfs_rbd_image *image, uint64_t offset, size_t length, void *buffer) {
    return ceph.read2(image->image, offset, length, buffer, LIBRADOS_OP_FLAG_FADVISE_SEQUENTIAL | LIBRADOS_OP_FLAG_FADVISE_NOCACHE);
}

typedef struct {
    vfs_rbd_extent *extents;
    size_t count;
    size_t capacity;
} extent_list;

static int add_extent(uint64_t offset, size_t length, int exists, void *arg) {
    extent_list *list = arg;
    if (list->count > 0) {
        /* Adjacent extents of the same kind become one. */
        vfs_rbd_extent *last = &list->extents[list->count - 1];
        if (last->exists == exists && last->offset + last->length == offset) {
            last->length += length;
            return 0;
        }
    }
    if (list->count == list->capacity) {
        size_t capacity = list->capacity ? list->capacity * 2 : 256;
        vfs_rbd_extent *grown = realloc(list->extents, capacity * sizeof *grown);
        if (grown == NULL) return -ENOMEM;
        list->extents = grown;
        list->capacity = capacity;
    }
    list->extents[list->count++] = (vfs_rbd_extent){ offset, length, exists };
    return 0;
}

int vfs_rbd_diff(vfs_rbd_image *image, const char *from, int whole_object, vfs_rbd_extent **extents, size_t *count) {
    uint64_t size = 0;
    int r = ceph.get_size(image->image, &size);
    if (r < 0) return r;
    extent_list list = { NULL, 0, 0 };
    r = ceph.diff_iterate2(image->image, from, 0, size, 1, whole_object ? 1 : 0, add_extent, &list);
    if (r < 0) { free(list.extents); return r; }
    *extents = list.extents;
    *count = list.count;
    return 0;
}

int vfs_rbd_snap_create(vfs_rbd_image *image, const char *name) { return ceph.snap_create(image->image, name); }

int vfs_rbd_snap_remove(vfs_rbd_image *image, const char *name) { return ceph.snap_remove(image->image, name); }

int vfs_rbd_snap_names(vfs_rbd_image *image, char **names, size_t *length) {
    int max = 16;
    rbd_snap_info_t *snaps = NULL;
    int r;
    for (;;) {
        snaps = calloc((size_t)max, sizeof *snaps);
        if (snaps == NULL) return -ENOMEM;
        r = ceph.snap_list(image->image, snaps, &max);
        if (r != -ERANGE) break;
        free(snaps);
        snaps = NULL;
    }
    if (r < 0) { free(snaps); return r; }
    size_t total = 0;
    for (int i = 0; i < r; i++) total += strlen(snaps[i].name) + 1;
    char *buffer = malloc(total ? total : 1);
    if (buffer == NULL) { ceph.snap_list_end(snaps); free(snaps); return -ENOMEM; }
    size_t at = 0;
    for (int i = 0; i < r; i++) {
        size_t n = strlen(snaps[i].name) + 1;
        memcpy(buffer + at, snaps[i].name, n);
        at += n;
    }
    ceph.snap_list_end(snaps);
    free(snaps);
    *names = buffer;
    *length = total;
    return 0;
}

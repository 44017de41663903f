#include "CNbd.h"
#include <libnbd.h>
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* libnbd loads only for nbd: disks. Only these calls are used, through these pointers. */
static struct {
    struct nbd_handle *(*create)(void);
    void (*close)(struct nbd_handle *);
    const char *(*get_error)(void);
    int (*get_errno)(void);
    int (*add_meta_context)(struct nbd_handle *, const char *);
    int (*connect_uri)(struct nbd_handle *, const char *);
    int64_t (*get_size)(struct nbd_handle *);
    int (*pread)(struct nbd_handle *, void *, size_t, uint64_t, uint32_t);
    int (*block_status)(struct nbd_handle *, uint64_t, uint64_t, nbd_extent_callback, uint32_t);
} lib;
static char load_error[256] = "libnbd was not loaded";
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void load(void) {
    void *library = dlopen(VFS_LIBNBD, RTLD_NOW | RTLD_LOCAL);
    if (library == NULL) {
        snprintf(load_error, sizeof load_error, "cannot load libnbd (%s), which nbd: disks need: install libnbd0", dlerror());
        return;
    }
#define FIND(field, name) \
    if ((lib.field = (__typeof__(lib.field))dlsym(library, name)) == NULL) { \
        snprintf(load_error, sizeof load_error, "%s has no %s: libnbd 1.14 or later is needed", VFS_LIBNBD, name); \
        return; \
    }
    FIND(create, "nbd_create")
    FIND(close, "nbd_close")
    FIND(get_error, "nbd_get_error")
    FIND(get_errno, "nbd_get_errno")
    FIND(add_meta_context, "nbd_add_meta_context")
    FIND(connect_uri, "nbd_connect_uri")
    FIND(get_size, "nbd_get_size")
    FIND(pread, "nbd_pread")
    FIND(block_status, "nbd_block_status")
#undef FIND
    load_error[0] = 0;
}

int vfs_nbd_init(char *error, size_t size) {
    pthread_once(&once, load);
    if (load_error[0] == 0) return 0;
    if (error != NULL && size > 0) snprintf(error, size, "%s", load_error);
    return -1;
}

struct vfs_nbd {
    struct nbd_handle *handle;
    char bitmap[300];
};

/* libnbd's last error on this thread, and its errno (EIO when it gives none). */
static int failed(char *error, size_t size) {
    const char *message = lib.get_error();
    snprintf(error, size, "%s", message != NULL ? message : "unknown libnbd error");
    int code = lib.get_errno();
    return code > 0 ? -code : -EIO;
}

int vfs_nbd_connect(const char *uri, const char *bitmap, vfs_nbd **out, char *error, size_t size) {
    if (vfs_nbd_init(error, size) != 0) return -ENOSYS;
    vfs_nbd *nbd = calloc(1, sizeof *nbd);
    if (nbd == NULL) return -ENOMEM;
    nbd->handle = lib.create();
    if (nbd->handle == NULL) { free(nbd); return failed(error, size); }
    if (bitmap != NULL) snprintf(nbd->bitmap, sizeof nbd->bitmap, "qemu:dirty-bitmap:%s", bitmap);
    if (lib.add_meta_context(nbd->handle, "base:allocation") == -1
        || (bitmap != NULL && lib.add_meta_context(nbd->handle, nbd->bitmap) == -1)
        || lib.connect_uri(nbd->handle, uri) == -1) {
        int code = failed(error, size);
        lib.close(nbd->handle);
        free(nbd);
        return code;
    }
    *out = nbd;
    return 0;
}

void vfs_nbd_close(vfs_nbd *nbd) {
    if (nbd == NULL) return;
    lib.close(nbd->handle);
    free(nbd);
}

int64_t vfs_nbd_size(vfs_nbd *nbd) { return lib.get_size(nbd->handle); }

int vfs_nbd_pread(vfs_nbd *nbd, void *buffer, size_t length, uint64_t offset, char *error, size_t size) {
    return lib.pread(nbd->handle, buffer, length, offset, 0) == -1 ? failed(error, size) : 0;
}

typedef struct {
    const char *context;
    vfs_nbd_extent *extents;
    size_t count;
    size_t capacity;
    uint64_t reached; /* the end of the last extent the server gave for `context` */
    int error;
} extent_list;

static int add_extents(void *user, const char *context, uint64_t offset, uint32_t *entries, size_t count, int *error) {
    (void)error;
    extent_list *list = user;
    if (strcmp(context, list->context) != 0) return 0;
    for (size_t i = 0; i + 1 < count; i += 2) {
        uint64_t length = entries[i];
        uint32_t flags = entries[i + 1];
        if (list->count > 0) {
            vfs_nbd_extent *last = &list->extents[list->count - 1];
            if (last->flags == flags && last->offset + last->length == offset) {
                last->length += length;
                offset += length;
                list->reached = offset;
                continue;
            }
        }
        if (list->count == list->capacity) {
            size_t capacity = list->capacity ? list->capacity * 2 : 256;
            vfs_nbd_extent *grown = realloc(list->extents, capacity * sizeof *grown);
            if (grown == NULL) { list->error = -ENOMEM; return -1; }
            list->extents = grown;
            list->capacity = capacity;
        }
        list->extents[list->count++] = (vfs_nbd_extent){ offset, length, flags };
        offset += length;
        list->reached = offset;
    }
    return 0;
}

int vfs_nbd_extents(vfs_nbd *nbd, int which, vfs_nbd_extent **extents, size_t *count, char *error, size_t size) {
    int64_t total = lib.get_size(nbd->handle);
    if (total < 0) return failed(error, size);
    extent_list list = { which == 0 ? "base:allocation" : nbd->bitmap, NULL, 0, 0, 0, 0 };
    uint64_t offset = 0;
    while (offset < (uint64_t)total) {
        /* The server answers for a prefix of what is asked; ask again from where it stopped. */
        uint64_t ask = (uint64_t)total - offset;
        if (ask > (1u << 30)) ask = 1u << 30;
        list.reached = offset;
        nbd_extent_callback callback = { .callback = add_extents, .user_data = &list, .free = NULL };
        if (lib.block_status(nbd->handle, ask, offset, callback, 0) == -1) {
            int code = list.error != 0 ? list.error : failed(error, size);
            free(list.extents);
            return code;
        }
        if (list.reached <= offset) {
            snprintf(error, size, "the NBD server gave no extent of %s at %llu", list.context, (unsigned long long)offset);
            free(list.extents);
            return -EIO;
        }
        offset = list.reached;
    }
    *extents = list.extents;
    *count = list.count;
    return 0;
}

#ifndef VAULTFS_CFUSE3_SHIM_H
#define VAULTFS_CFUSE3_SHIM_H
/* libfuse 3.14's low-level API, with the few pieces Swift cannot import directly wrapped
 * in static inline functions, each prefixed vfs_. */
#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
#include <sys/stat.h>
#include <stddef.h>
#include <errno.h>

/* fuse_session_new is a macro over a versioned symbol. */
static inline struct fuse_session *vfs_session_new(struct fuse_args *args,
        const struct fuse_lowlevel_ops *ops, void *userdata) {
    return fuse_session_new(args, ops, sizeof(*ops), userdata);
}

/* fuse_session_loop_mt is a macro selecting a versioned symbol. */
static inline int vfs_session_loop_mt(struct fuse_session *se, unsigned int max_threads) {
    struct fuse_loop_config *cfg = fuse_loop_cfg_create();
    if (cfg == NULL) return -ENOMEM;
    fuse_loop_cfg_set_max_threads(cfg, max_threads);
    fuse_loop_cfg_set_clone_fd(cfg, 0);
    int rc = fuse_session_loop_mt(se, cfg);
    fuse_loop_cfg_destroy(cfg);
    return rc;
}

/* fuse_file_info flags are bitfields; setters keep Swift off the layout. */
static inline void vfs_fi_set_keep_cache(struct fuse_file_info *fi, int on) { fi->keep_cache = on ? 1 : 0; }
static inline void vfs_fi_set_direct_io(struct fuse_file_info *fi, int on) { fi->direct_io = on ? 1 : 0; }
static inline void vfs_fi_set_cache_readdir(struct fuse_file_info *fi, int on) { fi->cache_readdir = on ? 1 : 0; }
static inline int vfs_fi_flags(const struct fuse_file_info *fi) { return fi->flags; }

/* fuse_conn_info fields set in init: large requests (libfuse derives the kernel's page limit
 * per request from max_write) and a matching read-ahead. */
static inline void vfs_conn_tune(struct fuse_conn_info *conn, unsigned max_io, unsigned max_readahead) {
    conn->max_write = max_io;
    conn->max_read = max_io;
    conn->max_readahead = max_readahead;
}

#endif

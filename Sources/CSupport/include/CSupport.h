#ifndef VAULTFS_CSUPPORT_H
#define VAULTFS_CSUPPORT_H
/* GNU-only system calls that Swift's Glibc module hides behind _GNU_SOURCE. */
#include <sys/types.h>

/* syncfs(2): flush the repository's filesystem once before a point is committed. */
int vfs_syncfs(int fd);

/* Starts `path` with `argv` in a new session (POSIX_SPAWN_SETSID, a GNU flag), standard
 * input and output on /dev/null, `notify_fd` as its fd 3 and no other inherited descriptor.
 * Returns the pid, or -errno. */
pid_t vfs_spawn_detached(const char *path, char *const argv[], int notify_fd);

/* mallopt(M_ARENA_MAX): glibc gives each thread that allocates its own arena (up to 8 per
 * core), so a daemon with 16 FUSE threads holds freed memory in many arenas. Bounding them
 * keeps its resident memory near what it uses. Returns mallopt's result (1 on success). */
int vfs_limit_malloc_arenas(int count);

/* O_DIRECT, whose value differs between architectures: a backup reads each disk past the
 * page cache. */
extern const int vfs_o_direct;
#endif

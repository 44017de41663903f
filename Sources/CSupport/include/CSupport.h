#ifndef VAULTFS_CSUPPORT_H
#define VAULTFS_CSUPPORT_H
/* GNU-only system calls that Swift's Glibc module hides behind _GNU_SOURCE. */
#include <sys/types.h>

/* syncfs(2): flush the repository's filesystem once before a point is committed. */
int vfs_syncfs(int fd);

/* Starts `path` with `argv` in a new session (POSIX_SPAWN_SETSID, a GNU flag), standard
 * input and output on /dev/null, standard error on `error_fd`, `notify_fd` as its fd 3 and
 * no other inherited descriptor. Returns the pid, or -errno. */
pid_t vfs_spawn_detached(const char *path, char *const argv[], int notify_fd, int error_fd);

/* Starts `path` with `argv` and `envp`, keeping standard input, output and error and no other
 * inherited descriptor (posix_spawn_file_actions_addclosefrom_np, a GNU call Swift does not
 * see). Returns the pid, or -errno. */
pid_t vfs_spawn(const char *path, char *const argv[], char *const envp[]);

/* mallopt(M_ARENA_MAX): glibc gives each thread that allocates its own arena (up to 8 per
 * core), so a daemon with 16 FUSE threads holds freed memory in many arenas. Bounding them
 * keeps its resident memory near what it uses. Returns mallopt's result (1 on success). */
int vfs_limit_malloc_arenas(int count);

/* O_DIRECT, whose value differs between architectures: a backup reads each disk past the
 * page cache. */
extern const int vfs_o_direct;
/* A restore writes zeros without writing them: a hole punched in a file
 * (fallocate PUNCH_HOLE, size kept), or a range zeroed by a block device (BLKZEROOUT).
 * Each returns 0, or -errno (-EOPNOTSUPP where the filesystem or device cannot). */
int vfs_punch_hole(int fd, long long offset, long long length);
int vfs_zero_range(int fd, unsigned long long offset, unsigned long long length);

/* An open-file-description write lock on the whole file (F_OFD_SETLK), held until the
 * descriptor is closed: refused (-EAGAIN) while another program holds any lock on it, as a
 * running qemu does on its disk images. Returns 0 or -errno. */
int vfs_lock_whole_file(int fd);
#endif

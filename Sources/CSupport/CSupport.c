#define _GNU_SOURCE
#include "CSupport.h"
#include <malloc.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <linux/falloc.h>
#include <linux/fs.h>

extern char **environ;

int vfs_syncfs(int fd) { return syncfs(fd); }

pid_t vfs_spawn_detached(const char *path, char *const argv[], int notify_fd, int error_fd) {
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attributes;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_adddup2(&actions, error_fd, 2);
    posix_spawn_file_actions_adddup2(&actions, notify_fd, 3);
    /* A daemon keeps none of its caller's descriptors: a caller waiting for EOF on one of
     * them would otherwise wait for the whole life of the mount. */
    posix_spawn_file_actions_addclosefrom_np(&actions, 4);
    posix_spawnattr_init(&attributes);
    posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSID);
    pid_t pid = 0;
    int rc = posix_spawn(&pid, path, &actions, &attributes, argv, environ);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attributes);
    return rc == 0 ? pid : -rc;
}

pid_t vfs_spawn(const char *path, char *const argv[], char *const envp[]) {
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attributes;
    posix_spawn_file_actions_init(&actions);
    int rc = posix_spawn_file_actions_addclosefrom_np(&actions, 3);
    /* The command gets every signal back at its default and none blocked: a scheduler
     * ignores SIGINT and SIGTERM, and worker threads block signals, but a hook (fsfreeze,
     * ssh, timeout) must stay stoppable. */
    sigset_t all, none;
    sigfillset(&all);
    sigemptyset(&none);
    posix_spawnattr_init(&attributes);
    posix_spawnattr_setsigdefault(&attributes, &all);
    posix_spawnattr_setsigmask(&attributes, &none);
    posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
    pid_t pid = 0;
    if (rc == 0) rc = posix_spawn(&pid, path, &actions, &attributes, argv, envp);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attributes);
    return rc == 0 ? pid : -rc;
}

int vfs_limit_malloc_arenas(int count) {
    return mallopt(M_ARENA_MAX, count);
}

const int vfs_o_direct = O_DIRECT;

int vfs_punch_hole(int fd, long long offset, long long length) {
    return fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length) == 0 ? 0 : -errno;
}

int vfs_zero_range(int fd, unsigned long long offset, unsigned long long length) {
    unsigned long long range[2] = {offset, length};
    return ioctl(fd, BLKZEROOUT, range) == 0 ? 0 : -errno;
}

int vfs_lock_whole_file(int fd) {
    struct flock lock = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0, .l_pid = 0};
    return fcntl(fd, F_OFD_SETLK, &lock) == 0 ? 0 : -errno;
}

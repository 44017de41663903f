#ifndef VAULTFS_CSUPPORT_H
#define VAULTFS_CSUPPORT_H
/* GNU-only system calls that Swift's Glibc module hides behind _GNU_SOURCE. */
#define _GNU_SOURCE
#include <unistd.h>

/* syncfs(2): flush the repository's filesystem once before a point is committed. */
int vfs_syncfs(int fd);
#endif

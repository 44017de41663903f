#include "CSupport.h"

int vfs_syncfs(int fd) { return syncfs(fd); }

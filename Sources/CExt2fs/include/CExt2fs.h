#ifndef VAULTFS_CEXT2FS_H
#define VAULTFS_CEXT2FS_H
/* libext2fs behind a few calls Swift can hold: a read-only io_manager that takes its bytes
 * from a Swift callback (no file, no loop device), and inode, directory, symlink, xattr and
 * extent access whose libext2fs forms are macros, unions or callbacks with C types. Every
 * call returns 0 or a libext2fs error code (errno values included); vfs_ext2_error names it.
 * A filesystem handle is not thread-safe: callers serialize all calls on one handle. */
#include <stddef.h>
#include <stdint.h>

typedef struct struct_ext2_filsys *vfs_ext2_fs;

/* Copies `length` bytes at `offset` of the source into `buffer`; returns 0 or an errno. */
typedef int (*vfs_ext2_read_fn)(void *source, uint64_t offset, void *buffer, size_t length);

/* Opens the ext2/3/4 filesystem held by a source of `size` bytes, read-only: the journal is
 * never replayed and nothing is ever written. */
long vfs_ext2_open(vfs_ext2_read_fn read, void *source, uint64_t size, vfs_ext2_fs *out);
void vfs_ext2_close(vfs_ext2_fs fs);
const char *vfs_ext2_error(long code);

struct vfs_ext2_info {
    uint32_t block_size;
    uint64_t blocks, free_blocks;
    uint32_t inodes, free_inodes;
    int has_journal, needs_recovery, is_ext4, errors_recorded;
    char label[17];
    uint8_t uuid[16];
};
void vfs_ext2_info(vfs_ext2_fs fs, struct vfs_ext2_info *out);

struct vfs_ext2_attr {
    uint32_t mode, uid, gid, nlink, rdev_major, rdev_minor;
    uint64_t size, blocks512;
    int64_t atime, mtime, ctime;
    uint32_t atime_nsec, mtime_nsec, ctime_nsec;
};
long vfs_ext2_stat(vfs_ext2_fs fs, uint32_t ino, struct vfs_ext2_attr *out);

/* Calls `emit` for each entry of directory `dir` except "." and ".."; a non-zero return from
 * `emit` stops the walk. `type` is the entry's file type (EXT2_FT_*), 0 when unknown. */
typedef int (*vfs_ext2_entry_fn)(void *context, const char *name, int length, uint32_t ino, int type);
long vfs_ext2_list(vfs_ext2_fs fs, uint32_t dir, vfs_ext2_entry_fn emit, void *context);

/* Reads up to `size` bytes of file `ino` at `offset`; `*got` says how many (0 at the end). */
long vfs_ext2_read(vfs_ext2_fs fs, uint32_t ino, uint64_t offset, void *buffer, size_t size, size_t *got);

/* The target of symlink `ino`, NUL-terminated in `buffer` (`*length` bytes without the NUL). */
long vfs_ext2_readlink(vfs_ext2_fs fs, uint32_t ino, char *buffer, size_t capacity, size_t *length);

/* Calls `emit` for each leaf extent of file `ino`, in the tree's order: its first logical
 * block, length in blocks, first physical block, and whether it is unwritten (reads as
 * zeros). A non-zero return from `emit` stops the walk. `*mapped` is 0, and nothing is
 * emitted, when the file has no extent tree (block-mapped, or inline data). */
typedef int (*vfs_ext2_extent_fn)(void *context, uint64_t logical, uint64_t length, uint64_t physical, int unwritten);
long vfs_ext2_extents(vfs_ext2_fs fs, uint32_t ino, int *mapped, vfs_ext2_extent_fn emit, void *context);

/* SEEK_DATA (`data` = 1) or SEEK_HOLE (0) from `offset`. Unwritten extents count as holes.
 * Files without an extent tree report data everywhere, as POSIX allows. ENXIO past the end;
 * EFBIG when the answer lies more than 2^24 extents into the tree. Each call walks the tree
 * from its start: for a file opened once and sought often, read its extents instead. */
long vfs_ext2_seek(vfs_ext2_fs fs, uint32_t ino, uint64_t offset, int data, uint64_t *result);

/* Extended attribute names, each NUL-terminated, as listxattr(2) gives them; `*needed` is
 * the full length even when `capacity` is too small (then nothing is copied). */
long vfs_ext2_xattr_names(vfs_ext2_fs fs, uint32_t ino, char *buffer, size_t capacity, size_t *needed);
/* One attribute's value in getxattr(2)'s form (POSIX ACLs converted); ENODATA when absent. */
long vfs_ext2_xattr_value(vfs_ext2_fs fs, uint32_t ino, const char *name, void *buffer, size_t capacity, size_t *needed);
#endif

#include "CExt2fs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <et/com_err.h>
#include <ext2fs/ext2fs.h>

/* ---- The io_manager: bytes from a Swift callback, never written. ---- */

struct source {
    vfs_ext2_read_fn read;
    void *context;
    uint64_t size;
};

static struct struct_io_manager source_manager;

static errcode_t source_open(const char *name, int flags, io_channel *channel) {
    struct source *source = NULL;
    if (!name || sscanf(name, "vaultfs:%p", (void **)&source) != 1 || !source) return EXT2_ET_BAD_DEVICE_NAME;
    if (flags & IO_FLAG_RW) return EROFS;
    io_channel io = calloc(1, sizeof(*io));
    if (!io) return ENOMEM;
    io->magic = EXT2_ET_MAGIC_IO_CHANNEL;
    io->manager = &source_manager;
    io->name = strdup(name);
    io->block_size = 1024;
    io->refcount = 1;
    io->private_data = source;
    if (!io->name) { free(io); return ENOMEM; }
    *channel = io;
    return 0;
}

static errcode_t source_close(io_channel io) {
    if (--io->refcount > 0) return 0;
    free(io->name);
    free(io);
    return 0;
}

static errcode_t source_set_blksize(io_channel io, int size) {
    if (size <= 0 || size > (1 << 16)) return EXT2_ET_INVALID_ARGUMENT;
    io->block_size = size;
    return 0;
}

static errcode_t source_read_blk64(io_channel io, unsigned long long block, int count, void *data) {
    struct source *source = io->private_data;
    size_t length = count < 0 ? (size_t)(-(long long)count) : (size_t)count * (size_t)io->block_size;
    if (block > UINT64_MAX / (uint64_t)io->block_size) return EXT2_ET_SHORT_READ;
    uint64_t offset = block * (uint64_t)io->block_size;
    /* Out of range: an error, without touching the buffer (a damaged superblock can ask
     * for gigabytes of group descriptors; writing them would make them resident). */
    if (offset > source->size || length > source->size - offset) return EXT2_ET_SHORT_READ;
    int error = source->read(source->context, offset, data, length);
    return error ? (errcode_t)error : 0;
}

static errcode_t source_read_blk(io_channel io, unsigned long block, int count, void *data) {
    return source_read_blk64(io, block, count, data);
}

static errcode_t source_refuse_blk(io_channel io, unsigned long block, int count, const void *data) {
    (void)io; (void)block; (void)count; (void)data;
    return EROFS;
}

static errcode_t source_refuse_blk64(io_channel io, unsigned long long block, int count, const void *data) {
    (void)io; (void)block; (void)count; (void)data;
    return EROFS;
}

static errcode_t source_refuse_byte(io_channel io, unsigned long offset, int count, const void *data) {
    (void)io; (void)offset; (void)count; (void)data;
    return EROFS;
}

static errcode_t source_flush(io_channel io) { (void)io; return 0; }

static errcode_t source_set_option(io_channel io, const char *option, const char *arg) {
    (void)io; (void)option; (void)arg;
    return EXT2_ET_INVALID_ARGUMENT;
}

static struct struct_io_manager source_manager = {
    .magic = EXT2_ET_MAGIC_IO_MANAGER,
    .name = "vaultfs point image",
    .open = source_open,
    .close = source_close,
    .set_blksize = source_set_blksize,
    .read_blk = source_read_blk,
    .write_blk = source_refuse_blk,
    .flush = source_flush,
    .write_byte = source_refuse_byte,
    .set_option = source_set_option,
    .read_blk64 = source_read_blk64,
    .write_blk64 = source_refuse_blk64,
};

/* The source lives as long as the filesystem: it hangs off fs->priv_data. */
long vfs_ext2_open(vfs_ext2_read_fn read, void *context, uint64_t size, vfs_ext2_fs *out) {
    static int tables_loaded;
    if (!__atomic_exchange_n(&tables_loaded, 1, __ATOMIC_SEQ_CST)) initialize_ext2_error_table();
    struct source *source = malloc(sizeof(*source));
    if (!source) return ENOMEM;
    source->read = read;
    source->context = context;
    source->size = size;
    char name[64];
    snprintf(name, sizeof(name), "vaultfs:%p", (void *)source);
    ext2_filsys fs = NULL;
    errcode_t error = ext2fs_open2(name, NULL, EXT2_FLAG_64BITS, 0, 0, &source_manager, &fs);
    if (error) {
        free(source);
        return error;
    }
    fs->priv_data = source;
    *out = fs;
    return 0;
}

void vfs_ext2_close(vfs_ext2_fs fs) {
    if (!fs) return;
    void *source = fs->priv_data;
    ext2fs_close_free(&fs);
    free(source);
}

const char *vfs_ext2_error(long code) { return error_message(code); }

void vfs_ext2_info(vfs_ext2_fs fs, struct vfs_ext2_info *out) {
    struct ext2_super_block *sb = fs->super;
    memset(out, 0, sizeof(*out));
    out->block_size = fs->blocksize;
    out->blocks = ext2fs_blocks_count(sb);
    out->free_blocks = ext2fs_free_blocks_count(sb);
    out->inodes = sb->s_inodes_count;
    out->free_inodes = sb->s_free_inodes_count;
    out->has_journal = ext2fs_has_feature_journal(sb);
    out->needs_recovery = ext2fs_has_feature_journal_needs_recovery(sb);
    out->is_ext4 = ext2fs_has_feature_extents(sb) || ext2fs_has_feature_flex_bg(sb) || ext2fs_has_feature_64bit(sb) ||
                   ext2fs_has_feature_huge_file(sb) || ext2fs_has_feature_metadata_csum(sb);
    out->errors_recorded = (sb->s_state & EXT2_ERROR_FS) != 0;
    memcpy(out->label, sb->s_volume_name, 16);
    out->label[16] = 0;
    memcpy(out->uuid, sb->s_uuid, 16);
}

/* ---- Inodes ---- */

static long read_inode(ext2_filsys fs, uint32_t ino, struct ext2_inode_large *inode) {
    if (ino == 0 || ino > fs->super->s_inodes_count) return EXT2_ET_BAD_INODE_NUM;
    memset(inode, 0, sizeof(*inode));
    return ext2fs_read_inode_full(fs, ino, (struct ext2_inode *)inode, sizeof(*inode));
}

/* Whether the large inode holds `end` bytes (a field's end offset) within its extra space. */
static int has_extra(ext2_filsys fs, const struct ext2_inode_large *inode, size_t end) {
    return EXT2_INODE_SIZE(fs->super) > EXT2_GOOD_OLD_INODE_SIZE &&
           end <= EXT2_GOOD_OLD_INODE_SIZE + (size_t)inode->i_extra_isize &&
           end <= (size_t)EXT2_INODE_SIZE(fs->super);
}

static void decode_time(uint32_t seconds, uint32_t extra, int have_extra, int64_t *out, uint32_t *nsec) {
    *out = (int32_t)seconds;
    *nsec = 0;
    if (have_extra) {
        *out += (int64_t)(extra & EXT4_EPOCH_MASK) << 32;
        *nsec = extra >> EXT4_EPOCH_BITS;
        if (*nsec > 999999999) *nsec = 0;
    }
}

long vfs_ext2_stat(vfs_ext2_fs fs, uint32_t ino, struct vfs_ext2_attr *out) {
    struct ext2_inode_large inode;
    long error = read_inode(fs, ino, &inode);
    if (error) return error;
    memset(out, 0, sizeof(*out));
    out->mode = inode.i_mode;
    out->uid = inode_uid(inode);
    out->gid = inode_gid(inode);
    out->nlink = inode.i_links_count;
    out->size = EXT2_I_SIZE(&inode);
    out->blocks512 = ext2fs_get_stat_i_blocks(fs, (struct ext2_inode *)&inode);
    size_t base = offsetof(struct ext2_inode_large, i_ctime_extra);
    decode_time(inode.i_ctime, inode.i_ctime_extra, has_extra(fs, &inode, base + 4), &out->ctime, &out->ctime_nsec);
    decode_time(inode.i_mtime, inode.i_mtime_extra, has_extra(fs, &inode, base + 8), &out->mtime, &out->mtime_nsec);
    decode_time(inode.i_atime, inode.i_atime_extra, has_extra(fs, &inode, base + 12), &out->atime, &out->atime_nsec);
    if (LINUX_S_ISCHR(inode.i_mode) || LINUX_S_ISBLK(inode.i_mode)) {
        if (inode.i_block[0]) {
            out->rdev_major = (inode.i_block[0] >> 8) & 255;
            out->rdev_minor = inode.i_block[0] & 255;
        } else {
            out->rdev_major = (inode.i_block[1] & 0xfff00) >> 8;
            out->rdev_minor = (inode.i_block[1] & 0xff) | ((inode.i_block[1] >> 12) & 0xfff00);
        }
    }
    return 0;
}

/* ---- Directories ---- */

struct list_state {
    vfs_ext2_entry_fn emit;
    void *context;
    uint64_t left; /* entries the directory's size can hold; a damaged extent tree can map
                      one block many times over */
    int overflow;
};

static int list_entry(struct ext2_dir_entry *dirent, int offset, int blocksize, char *buf, void *priv) {
    (void)offset; (void)blocksize; (void)buf;
    struct list_state *state = priv;
    int length = ext2fs_dirent_name_len(dirent);
    if (dirent->inode == 0 || length == 0) return 0;
    if (state->left == 0) {
        state->overflow = 1;
        return DIRENT_ABORT;
    }
    state->left--;
    return state->emit(state->context, dirent->name, length, dirent->inode, ext2fs_dirent_file_type(dirent))
        ? DIRENT_ABORT : 0;
}

long vfs_ext2_list(vfs_ext2_fs fs, uint32_t dir, vfs_ext2_entry_fn emit, void *context) {
    struct ext2_inode_large inode;
    long error = read_inode(fs, dir, &inode);
    if (error) return error;
    /* The smallest entry takes 12 bytes; inline directories hold a few in the inode. */
    struct list_state state = { emit, context, EXT2_I_SIZE(&inode) / 12 + 64, 0 };
    error = ext2fs_dir_iterate(fs, dir, 0, NULL, list_entry, &state);
    return error ? error : state.overflow ? EXT2_ET_DIR_CORRUPTED : 0;
}

/* ---- File contents ---- */

long vfs_ext2_read(vfs_ext2_fs fs, uint32_t ino, uint64_t offset, void *buffer, size_t size, size_t *got) {
    *got = 0;
    struct ext2_inode_large inode;
    long checked = read_inode(fs, ino, &inode);
    if (checked) return checked;
    if (inode.i_flags & EXT4_INLINE_DATA_FL) {
        /* libext2fs copies inline data into a buffer of three blocks without checking. */
        size_t inline_size = 0;
        checked = ext2fs_inline_data_size(fs, ino, &inline_size);
        if (checked) return checked;
        if (inline_size > fs->blocksize) return EXT2_ET_INODE_CORRUPTED;
    }
    ext2_file_t file;
    /* The inode just read serves the open too: one inode read per FUSE read, not two. */
    errcode_t error = ext2fs_file_open2(fs, ino, (struct ext2_inode *)&inode, 0, &file);
    if (error) return error;
    error = ext2fs_file_llseek(file, offset, EXT2_SEEK_SET, NULL);
    while (!error && *got < size) {
        unsigned int chunk = size - *got > (1u << 30) ? (1u << 30) : (unsigned int)(size - *got);
        unsigned int n = 0;
        error = ext2fs_file_read(file, (char *)buffer + *got, chunk, &n);
        if (n == 0) break;
        *got += n;
    }
    errcode_t closed = ext2fs_file_close(file);
    return error ? error : closed;
}

long vfs_ext2_readlink(vfs_ext2_fs fs, uint32_t ino, char *buffer, size_t capacity, size_t *length) {
    struct ext2_inode_large inode;
    long error = read_inode(fs, ino, &inode);
    if (error) return error;
    if (!LINUX_S_ISLNK(inode.i_mode)) return EINVAL;
    uint64_t size = EXT2_I_SIZE(&inode);
    if (capacity == 0 || size >= capacity) return ENAMETOOLONG;
    if (ext2fs_is_fast_symlink((struct ext2_inode *)&inode)) {
        if (size >= sizeof(inode.i_block)) return EXT2_ET_INODE_CORRUPTED;
        memcpy(buffer, (char *)inode.i_block, size);
        *length = size;
    } else if (inode.i_flags & EXT4_INLINE_DATA_FL) {
        /* ext2fs_inline_data_get writes all it holds, whatever the size given. */
        size_t inline_size = 0;
        error = ext2fs_inline_data_size(fs, ino, &inline_size);
        if (error) return error;
        if (inline_size >= capacity) return ENAMETOOLONG;
        error = ext2fs_inline_data_get(fs, ino, (struct ext2_inode *)&inode, buffer, &inline_size);
        if (error) return error;
        *length = inline_size < size ? inline_size : size;
    } else {
        error = vfs_ext2_read(fs, ino, 0, buffer, size, length);
        if (error) return error;
    }
    buffer[*length] = 0;
    return 0;
}

long vfs_ext2_seek(vfs_ext2_fs fs, uint32_t ino, uint64_t offset, int data, uint64_t *result) {
    struct ext2_inode_large inode;
    long error = read_inode(fs, ino, &inode);
    if (error) return error;
    uint64_t size = EXT2_I_SIZE(&inode);
    if (offset >= size) return ENXIO;
    if (!(inode.i_flags & EXT4_EXTENTS_FL)) {
        *result = data ? offset : size;
        return 0;
    }
    uint64_t block_size = fs->blocksize;
    uint64_t wanted = offset / block_size, cursor = wanted;
    ext2_extent_handle_t handle;
    error = ext2fs_extent_open2(fs, ino, (struct ext2_inode *)&inode, &handle);
    if (error) return error;
    struct ext2fs_extent extent;
    int found = 0;
    /* Leaves come in logical order; a damaged tree cannot make this loop forever. */
    errcode_t step = ext2fs_extent_get(handle, EXT2_EXTENT_ROOT, &extent);
    for (long visited = 0; !step && visited < (1L << 24); visited++) {
        if (extent.e_flags & EXT2_EXTENT_FLAGS_LEAF) {
            uint64_t start = extent.e_lblk, end = (uint64_t)extent.e_lblk + extent.e_len;
            int written = !(extent.e_flags & EXT2_EXTENT_FLAGS_UNINIT) && extent.e_len > 0;
            if (end > cursor && written) {
                if (data) {
                    cursor = start > cursor ? start : cursor;
                    found = 1;
                    break;
                }
                if (start > cursor) { found = 1; break; }
                cursor = end;
            }
        }
        step = ext2fs_extent_get(handle, EXT2_EXTENT_NEXT_LEAF, &extent);
    }
    ext2fs_extent_free(handle);
    if (step && step != EXT2_ET_EXTENT_NO_NEXT) return step;
    /* Stopped by the bound, not by the tree's end: no answer rather than a wrong one. */
    if (!step && !found) return EFBIG;
    if (data && !found) return ENXIO;
    uint64_t position = cursor == wanted ? offset : cursor * block_size;
    if (position >= size) {
        if (data) return ENXIO;
        position = size;
    }
    *result = position;
    return 0;
}

long vfs_ext2_extents(vfs_ext2_fs fs, uint32_t ino, int *mapped, vfs_ext2_extent_fn emit, void *context) {
    *mapped = 0;
    struct ext2_inode_large inode;
    long error = read_inode(fs, ino, &inode);
    if (error) return error;
    if (!(inode.i_flags & EXT4_EXTENTS_FL) || (inode.i_flags & EXT4_INLINE_DATA_FL)) return 0;
    ext2_extent_handle_t handle;
    error = ext2fs_extent_open2(fs, ino, (struct ext2_inode *)&inode, &handle);
    if (error) return error;
    *mapped = 1;
    struct ext2fs_extent extent;
    /* `emit` bounds the walk: a damaged tree cannot make it go on for ever. */
    errcode_t step = ext2fs_extent_get(handle, EXT2_EXTENT_ROOT, &extent);
    while (!step) {
        if ((extent.e_flags & EXT2_EXTENT_FLAGS_LEAF) &&
            emit(context, extent.e_lblk, extent.e_len, extent.e_pblk, (extent.e_flags & EXT2_EXTENT_FLAGS_UNINIT) != 0)) break;
        step = ext2fs_extent_get(handle, EXT2_EXTENT_NEXT_LEAF, &extent);
    }
    ext2fs_extent_free(handle);
    return step && step != EXT2_ET_EXTENT_NO_NEXT ? step : 0;
}

/* ---- Extended attributes ---- */

struct names_state {
    char *buffer;
    size_t capacity, needed;
};

static int add_name(char *name, char *value, size_t value_length, void *priv) {
    (void)value; (void)value_length;
    struct names_state *state = priv;
    if (strcmp(name, "system.data") == 0) return 0; /* inline data, not an attribute */
    size_t length = strlen(name) + 1;
    if (state->buffer && state->needed + length <= state->capacity) memcpy(state->buffer + state->needed, name, length);
    state->needed += length;
    return 0;
}

static long open_xattrs(ext2_filsys fs, uint32_t ino, struct ext2_xattr_handle **handle) {
    if (ino == 0 || ino > fs->super->s_inodes_count) return EXT2_ET_BAD_INODE_NUM;
    errcode_t error = ext2fs_xattrs_open(fs, ino, handle);
    if (error) return error;
    error = ext2fs_xattrs_read(*handle);
    if (error) ext2fs_xattrs_close(handle);
    return error;
}

long vfs_ext2_xattr_names(vfs_ext2_fs fs, uint32_t ino, char *buffer, size_t capacity, size_t *needed) {
    *needed = 0;
    if (!ext2fs_has_feature_xattr(fs->super)) return 0;
    struct ext2_xattr_handle *handle;
    long error = open_xattrs(fs, ino, &handle);
    if (error) return error;
    struct names_state state = { buffer, capacity, 0 };
    error = ext2fs_xattrs_iterate(handle, add_name, &state);
    ext2fs_xattrs_close(&handle);
    *needed = state.needed;
    return error;
}

long vfs_ext2_xattr_value(vfs_ext2_fs fs, uint32_t ino, const char *name, void *buffer, size_t capacity, size_t *needed) {
    *needed = 0;
    if (!ext2fs_has_feature_xattr(fs->super) || strcmp(name, "system.data") == 0) return ENODATA;
    struct ext2_xattr_handle *handle;
    long error = open_xattrs(fs, ino, &handle);
    if (error) return error;
    void *value = NULL;
    size_t length = 0;
    error = ext2fs_xattr_get(handle, name, &value, &length);
    ext2fs_xattrs_close(&handle);
    if (error == EXT2_ET_EA_KEY_NOT_FOUND) return ENODATA;
    if (error) return error;
    *needed = length;
    if (buffer && length <= capacity) memcpy(buffer, value, length);
    ext2fs_free_mem(&value);
    return 0;
}

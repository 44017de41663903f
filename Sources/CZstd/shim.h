#ifndef VAULTFS_CZSTD_SHIM_H
#define VAULTFS_CZSTD_SHIM_H
/* The whole zstd API Swift needs is plain functions; this header only gathers it. */
#include <zstd.h>
#endif

#ifndef VAULTFS_CCURL_H
#define VAULTFS_CCURL_H
/* One HTTP request through libcurl, signed with AWS Signature Version 4 by libcurl itself
 * (CURLOPT_AWS_SIGV4). libcurl's setopt is variadic, which Swift cannot call, so the whole
 * request is made here. Each thread keeps one easy handle, so its connection stays open
 * between requests. */
#include <stddef.h>
#include <stdint.h>

typedef struct {
    long status;              /* HTTP status, 0 when no answer came */
    unsigned char *body;      /* the answer's body (malloc'd; free with vfs_http_free) */
    size_t body_length;
    int64_t range_total;      /* from Content-Range: bytes a-b/TOTAL, or -1 */
    char error[256];          /* libcurl's message when status is 0 */
} vfs_http_response;

/* method: "GET", "PUT", "HEAD" or "DELETE". credentials: "KEY:SECRET". sigv4:
 * "aws:amz:REGION:s3". headers: `count` lines "Name: value". body/body_length: the PUT
 * payload. max_body: a longer answer is cut off and fails. timeout_seconds: the longest a
 * request may go without moving a byte (and the longest a connection may take, at most 10).
 * Returns 0, or -1 with response->error set (no connection, timeout, answer too long). */
int vfs_http_request(const char *method, const char *url, const char *credentials, const char *sigv4,
                     const char *const *headers, size_t count, const void *body, size_t body_length,
                     size_t max_body, long timeout_seconds, vfs_http_response *response);

void vfs_http_free(vfs_http_response *response);

/* Loads libcurl (VFS_LIBCURL, opened at run time rather than linked) and runs
 * curl_global_init, once, before any thread makes a request. Returns 0, or -1 with why in
 * `error` (libcurl missing or too old); every later call gives the same answer. */
int vfs_http_init(char *error, size_t size);

/* The libcurl that was built against: Debian's libcurl4 (OpenSSL). */
#define VFS_LIBCURL "libcurl.so.4"
#endif

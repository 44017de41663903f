#include "CCurl.h"
#include <curl/curl.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <stdio.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

/* libcurl is opened when the first S3 store is, not linked: linked, it and the two dozen
 * libraries it needs (TLS, Kerberos, LDAP, SSH, IDN...) were loaded by every start of
 * vaultctl and vaultfs, about 45 ms with a cold page cache and 7 ms warm, for the few
 * repositories that are in a bucket. Only the calls below are used, through these.
 * curl's compile-time check of curl_easy_setopt's arguments does not see calls through a
 * pointer: each option must be given a long, a pointer or a curl_off_t, as it documents. */
static struct {
    CURLcode (*global_init)(long);
    curl_version_info_data *(*version_info)(CURLversion);
    CURL *(*easy_init)(void);
    void (*easy_cleanup)(CURL *);
    void (*easy_reset)(CURL *);
    CURLcode (*easy_setopt)(CURL *, CURLoption, ...);
    CURLcode (*easy_perform)(CURL *);
    CURLcode (*easy_getinfo)(CURL *, CURLINFO, ...);
    const char *(*easy_strerror)(CURLcode);
    struct curl_slist *(*slist_append)(struct curl_slist *, const char *);
    void (*slist_free_all)(struct curl_slist *);
} curl;
/* Empty once libcurl is loaded and initialised; otherwise why it is not. Written only
 * inside pthread_once, which makes it visible to every caller after. */
static char load_error[256] = "libcurl was not loaded";

/* The first libcurl that signs requests itself (CURLOPT_AWS_SIGV4): an older one ignores
 * the option and sends them unsigned. */
#define VFS_LIBCURL_OLDEST 0x074B00
#define VFS_LIBCURL_OLDEST_TEXT "7.75.0"

static pthread_once_t once = PTHREAD_ONCE_INIT;
static void load(void) {
    void *library = dlopen(VFS_LIBCURL, RTLD_NOW | RTLD_LOCAL);
    if (library == NULL) {
        snprintf(load_error, sizeof load_error, "cannot load libcurl (%s), which S3 repositories need: install libcurl4", dlerror());
        return;
    }
#define FIND(field, name) \
    if ((curl.field = (__typeof__(curl.field))dlsym(library, name)) == NULL) { \
        snprintf(load_error, sizeof load_error, "%s has no %s: libcurl " VFS_LIBCURL_OLDEST_TEXT " or later is needed", VFS_LIBCURL, name); \
        dlclose(library); \
        return; \
    }
    FIND(global_init, "curl_global_init")
    FIND(version_info, "curl_version_info")
    FIND(easy_init, "curl_easy_init")
    FIND(easy_cleanup, "curl_easy_cleanup")
    FIND(easy_reset, "curl_easy_reset")
    FIND(easy_setopt, "curl_easy_setopt")
    FIND(easy_perform, "curl_easy_perform")
    FIND(easy_getinfo, "curl_easy_getinfo")
    FIND(easy_strerror, "curl_easy_strerror")
    FIND(slist_append, "curl_slist_append")
    FIND(slist_free_all, "curl_slist_free_all")
#undef FIND
    curl_version_info_data *version = curl.version_info(CURLVERSION_NOW);
    if (version == NULL || version->version_num < VFS_LIBCURL_OLDEST) {
        snprintf(load_error, sizeof load_error, "libcurl %s cannot sign S3 requests: libcurl " VFS_LIBCURL_OLDEST_TEXT " or later is needed",
                 version != NULL ? version->version : "of an unknown version");
        dlclose(library);
        return;
    }
    CURLcode code = curl.global_init(CURL_GLOBAL_DEFAULT);
    if (code != CURLE_OK) {
        snprintf(load_error, sizeof load_error, "cannot start libcurl: %s", curl.easy_strerror(code));
        return;
    }
    load_error[0] = 0;
}

int vfs_http_init(char *error, size_t size) {
    pthread_once(&once, load);
    if (load_error[0] == 0) return 0;
    if (error != NULL && size > 0) snprintf(error, size, "%s", load_error);
    return -1;
}

/* One handle per thread, freed when the thread ends. */
static pthread_key_t handle_key;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static void free_handle(void *handle) { curl.easy_cleanup(handle); }
static void make_key(void) { pthread_key_create(&handle_key, free_handle); }

static CURL *thread_handle(void) {
    pthread_once(&key_once, make_key);
    CURL *handle = pthread_getspecific(handle_key);
    if (handle == NULL) {
        handle = curl.easy_init();
        pthread_setspecific(handle_key, handle);
    } else {
        curl.easy_reset(handle);
    }
    return handle;
}

typedef struct { vfs_http_response *response; size_t capacity; size_t max; int too_long; } sink;

static size_t write_body(char *data, size_t size, size_t count, void *context) {
    sink *s = context;
    size_t n = size * count;
    if (s->response->body_length + n > s->max) { s->too_long = 1; return 0; }
    if (s->response->body_length + n > s->capacity) {
        size_t capacity = s->capacity ? s->capacity * 2 : 64 * 1024;
        while (capacity < s->response->body_length + n) capacity *= 2;
        unsigned char *grown = realloc(s->response->body, capacity);
        if (grown == NULL) return 0;
        s->response->body = grown;
        s->capacity = capacity;
    }
    memcpy(s->response->body + s->response->body_length, data, n);
    s->response->body_length += n;
    return n;
}

typedef struct { vfs_http_response *response; CURL *handle; } header_sink;

/* Acknowledges what has arrived now, if an ACK is pending (Linux sends it at once when
 * TCP_QUICKACK is set while one is delayed). */
static void ack_now(CURL *handle) {
    curl_socket_t socket = CURL_SOCKET_BAD;
    if (curl.easy_getinfo(handle, CURLINFO_ACTIVESOCKET, &socket) == CURLE_OK && socket != CURL_SOCKET_BAD) {
        int on = 1;
        setsockopt(socket, IPPROTO_TCP, TCP_QUICKACK, &on, sizeof on);
    }
}

static size_t read_header(char *data, size_t size, size_t count, void *context) {
    header_sink *to = context;
    vfs_http_response *response = to->response;
    size_t n = size * count;
    /* The end of the headers. A gateway that writes an answer's headers and a small body
     * apart (Nagle on its side) sends the body only once the headers are acknowledged,
     * which Linux would delay by 40 ms: acknowledge them now. */
    if (n == 2 && data[0] == '\r') ack_now(to->handle);
    static const char name[] = "content-range:";
    if (n > sizeof name && strncasecmp(data, name, sizeof name - 1) == 0) {
        char line[128];
        size_t length = n < sizeof line - 1 ? n : sizeof line - 1;
        memcpy(line, data, length);
        line[length] = 0;
        char *slash = strchr(line, '/');
        if (slash != NULL && slash[1] != '*') response->range_total = strtoll(slash + 1, NULL, 10);
    }
    return n;
}

typedef struct { const unsigned char *bytes; size_t length; size_t offset; } source;

static size_t read_body(char *buffer, size_t size, size_t count, void *context) {
    source *s = context;
    size_t n = size * count, left = s->length - s->offset;
    if (n > left) n = left;
    memcpy(buffer, s->bytes + s->offset, n);
    s->offset += n;
    return n;
}

int vfs_http_request(const char *method, const char *url, const char *credentials, const char *sigv4,
                     const char *const *headers, size_t count, const void *body, size_t body_length,
                     size_t max_body, long timeout_seconds, vfs_http_response *response) {
    memset(response, 0, sizeof *response);
    response->range_total = -1;
    if (vfs_http_init(response->error, sizeof response->error) != 0) return -1;
    CURL *handle = thread_handle();
    if (handle == NULL) { snprintf(response->error, sizeof response->error, "cannot start libcurl"); return -1; }
    struct curl_slist *list = NULL;
    for (size_t i = 0; i < count; i++) list = curl.slist_append(list, headers[i]);
    sink s = { response, 0, max_body, 0 };
    header_sink headers_to = { response, handle };
    source upload = { body, body_length, 0 };
    char error[CURL_ERROR_SIZE] = "";

    curl.easy_setopt(handle, CURLOPT_URL, url);
    curl.easy_setopt(handle, CURLOPT_NOSIGNAL, 1L);
    curl.easy_setopt(handle, CURLOPT_ERRORBUFFER, error);
    /* A request fails when it moves no byte for `timeout_seconds`, however long a slow
     * link needs for the whole of it. */
    curl.easy_setopt(handle, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl.easy_setopt(handle, CURLOPT_LOW_SPEED_TIME, timeout_seconds);
    curl.easy_setopt(handle, CURLOPT_CONNECTTIMEOUT, timeout_seconds < 10 ? timeout_seconds : 10L);
    curl.easy_setopt(handle, CURLOPT_USERPWD, credentials);
    curl.easy_setopt(handle, CURLOPT_AWS_SIGV4, sigv4);
    curl.easy_setopt(handle, CURLOPT_HTTPHEADER, list);
    curl.easy_setopt(handle, CURLOPT_WRITEFUNCTION, write_body);
    curl.easy_setopt(handle, CURLOPT_WRITEDATA, &s);
    curl.easy_setopt(handle, CURLOPT_HEADERFUNCTION, read_header);
    curl.easy_setopt(handle, CURLOPT_HEADERDATA, &headers_to);
    if (strcmp(method, "PUT") == 0) {
        curl.easy_setopt(handle, CURLOPT_UPLOAD, 1L);
        curl.easy_setopt(handle, CURLOPT_READFUNCTION, read_body);
        curl.easy_setopt(handle, CURLOPT_READDATA, &upload);
        curl.easy_setopt(handle, CURLOPT_INFILESIZE_LARGE, (curl_off_t)body_length);
    } else if (strcmp(method, "HEAD") == 0) {
        curl.easy_setopt(handle, CURLOPT_NOBODY, 1L);
    } else if (strcmp(method, "GET") != 0) {
        curl.easy_setopt(handle, CURLOPT_CUSTOMREQUEST, method);
    }
    CURLcode code = curl.easy_perform(handle);
    long status = 0;
    curl.easy_getinfo(handle, CURLINFO_RESPONSE_CODE, &status);
    /* The connection stays open for the next request: ask for quick ACKs on it again. */
    ack_now(handle);
    /* Nothing of this call (its buffers, the header list) stays referenced by the handle. */
    curl.easy_reset(handle);
    curl.slist_free_all(list);
    if (code != CURLE_OK) {
        if (s.too_long) snprintf(response->error, sizeof response->error, "the answer is longer than %zu bytes", max_body);
        else snprintf(response->error, sizeof response->error, "%s", error[0] ? error : curl.easy_strerror(code));
        response->status = 0;
        return -1;
    }
    response->status = status;
    return 0;
}

void vfs_http_free(vfs_http_response *response) {
    free(response->body);
    response->body = NULL;
    response->body_length = 0;
}

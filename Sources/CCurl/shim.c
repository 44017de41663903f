#include "CCurl.h"
#include <curl/curl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <stdio.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

static pthread_once_t once = PTHREAD_ONCE_INIT;
static void global_init(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }
void vfs_http_init(void) { pthread_once(&once, global_init); }

/* One handle per thread, freed when the thread ends. */
static pthread_key_t handle_key;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static void free_handle(void *handle) { curl_easy_cleanup(handle); }
static void make_key(void) { pthread_key_create(&handle_key, free_handle); }

static CURL *thread_handle(void) {
    pthread_once(&key_once, make_key);
    CURL *handle = pthread_getspecific(handle_key);
    if (handle == NULL) {
        handle = curl_easy_init();
        pthread_setspecific(handle_key, handle);
    } else {
        curl_easy_reset(handle);
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
    if (curl_easy_getinfo(handle, CURLINFO_ACTIVESOCKET, &socket) == CURLE_OK && socket != CURL_SOCKET_BAD) {
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
    vfs_http_init();
    CURL *handle = thread_handle();
    if (handle == NULL) { snprintf(response->error, sizeof response->error, "cannot start libcurl"); return -1; }
    struct curl_slist *list = NULL;
    for (size_t i = 0; i < count; i++) list = curl_slist_append(list, headers[i]);
    sink s = { response, 0, max_body, 0 };
    header_sink headers_to = { response, handle };
    source upload = { body, body_length, 0 };
    char error[CURL_ERROR_SIZE] = "";

    curl_easy_setopt(handle, CURLOPT_URL, url);
    curl_easy_setopt(handle, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(handle, CURLOPT_ERRORBUFFER, error);
    /* A request fails when it moves no byte for `timeout_seconds`, however long a slow
     * link needs for the whole of it. */
    curl_easy_setopt(handle, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(handle, CURLOPT_LOW_SPEED_TIME, timeout_seconds);
    curl_easy_setopt(handle, CURLOPT_CONNECTTIMEOUT, timeout_seconds < 10 ? timeout_seconds : 10L);
    curl_easy_setopt(handle, CURLOPT_USERPWD, credentials);
    curl_easy_setopt(handle, CURLOPT_AWS_SIGV4, sigv4);
    curl_easy_setopt(handle, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(handle, CURLOPT_WRITEFUNCTION, write_body);
    curl_easy_setopt(handle, CURLOPT_WRITEDATA, &s);
    curl_easy_setopt(handle, CURLOPT_HEADERFUNCTION, read_header);
    curl_easy_setopt(handle, CURLOPT_HEADERDATA, &headers_to);
    if (strcmp(method, "PUT") == 0) {
        curl_easy_setopt(handle, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(handle, CURLOPT_READFUNCTION, read_body);
        curl_easy_setopt(handle, CURLOPT_READDATA, &upload);
        curl_easy_setopt(handle, CURLOPT_INFILESIZE_LARGE, (curl_off_t)body_length);
    } else if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(handle, CURLOPT_NOBODY, 1L);
    } else if (strcmp(method, "GET") != 0) {
        curl_easy_setopt(handle, CURLOPT_CUSTOMREQUEST, method);
    }
    CURLcode code = curl_easy_perform(handle);
    long status = 0;
    curl_easy_getinfo(handle, CURLINFO_RESPONSE_CODE, &status);
    /* The connection stays open for the next request: ask for quick ACKs on it again. */
    ack_now(handle);
    /* Nothing of this call (its buffers, the header list) stays referenced by the handle. */
    curl_easy_reset(handle);
    curl_slist_free_all(list);
    if (code != CURLE_OK) {
        if (s.too_long) snprintf(response->error, sizeof response->error, "the answer is longer than %zu bytes", max_body);
        else snprintf(response->error, sizeof response->error, "%s", error[0] ? error : curl_easy_strerror(code));
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

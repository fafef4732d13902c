#ifndef CPROXY_NGHTTP2_SHIM_H
#define CPROXY_NGHTTP2_SHIM_H
#include <nghttp2/nghttp2.h>
#include <sys/types.h>

// nghttp2 1.60 added *_mem_recv2/_mem_send2 and deprecated the old pair; Debian 12 ships 1.52.
// Expose one pair whatever the version, so Swift code never sees the split.
static inline long CProxy_nghttp2_mem_recv(nghttp2_session *session, const uint8_t *in, size_t len) {
#if NGHTTP2_VERSION_NUM >= 0x013c00
    return (long)nghttp2_session_mem_recv2(session, in, len);
#else
    return (long)nghttp2_session_mem_recv(session, in, len);
#endif
}
static inline long CProxy_nghttp2_mem_send(nghttp2_session *session, const uint8_t **data) {
#if NGHTTP2_VERSION_NUM >= 0x013c00
    return (long)nghttp2_session_mem_send2(session, data);
#else
    return (long)nghttp2_session_mem_send(session, data);
#endif
}
#endif

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

// Request bodies: one read-callback shape for every nghttp2 version (ssize_t before 1.60, nghttp2_ssize after).
// The Swift callback finds its stream by id; nghttp2's data source only carries the callback pointer itself.
// Returns bytes written to buf, 0 with NGHTTP2_DATA_FLAG_EOF set in *data_flags at the end,
// NGHTTP2_ERR_DEFERRED when no bytes are queued yet, or NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE to reset the stream.
typedef long (*CProxy_nghttp2_body_read_callback)(nghttp2_session *session, int32_t stream_id, uint8_t *buf,
                                                  size_t length, uint32_t *data_flags, void *user_data);

#if NGHTTP2_VERSION_NUM >= 0x013c00
static inline nghttp2_ssize CProxy_nghttp2_body_read_trampoline(nghttp2_session *session, int32_t stream_id,
                                                                uint8_t *buf, size_t length, uint32_t *data_flags,
                                                                nghttp2_data_source *source, void *user_data) {
    return (nghttp2_ssize)((CProxy_nghttp2_body_read_callback)source->ptr)(session, stream_id, buf, length,
                                                                           data_flags, user_data);
}
#else
static inline ssize_t CProxy_nghttp2_body_read_trampoline(nghttp2_session *session, int32_t stream_id,
                                                          uint8_t *buf, size_t length, uint32_t *data_flags,
                                                          nghttp2_data_source *source, void *user_data) {
    return (ssize_t)((CProxy_nghttp2_body_read_callback)source->ptr)(session, stream_id, buf, length,
                                                                     data_flags, user_data);
}
#endif

// nghttp2_submit_request without priority and without stream user data. body_read == NULL: no request body,
// END_STREAM rides on HEADERS. Returns the new stream id (> 0) or a negative NGHTTP2_ERR_* code.
// nghttp2 copies the name/value bytes of nva (no NO_COPY flags), so they only need to live for the call.
static inline int32_t CProxy_nghttp2_submit_request(nghttp2_session *session, const nghttp2_nv *nva, size_t nvlen,
                                                    CProxy_nghttp2_body_read_callback body_read) {
#if NGHTTP2_VERSION_NUM >= 0x013c00
    if (body_read == NULL) {
        return nghttp2_submit_request2(session, NULL, nva, nvlen, NULL, NULL);
    }
    nghttp2_data_provider2 provider;
    provider.source.ptr = (void *)body_read;
    provider.read_callback = CProxy_nghttp2_body_read_trampoline;
    return nghttp2_submit_request2(session, NULL, nva, nvlen, &provider, NULL);
#else
    if (body_read == NULL) {
        return nghttp2_submit_request(session, NULL, nva, nvlen, NULL, NULL);
    }
    nghttp2_data_provider provider;
    provider.source.ptr = (void *)body_read;
    provider.read_callback = CProxy_nghttp2_body_read_trampoline;
    return nghttp2_submit_request(session, NULL, nva, nvlen, &provider, NULL);
#endif
}

// The server-side twin of CProxy_nghttp2_submit_request (used by the in-memory test peer):
// body_read == NULL sends END_STREAM with the response HEADERS.
static inline int CProxy_nghttp2_submit_response(nghttp2_session *session, int32_t stream_id, const nghttp2_nv *nva,
                                                 size_t nvlen, CProxy_nghttp2_body_read_callback body_read) {
#if NGHTTP2_VERSION_NUM >= 0x013c00
    if (body_read == NULL) {
        return nghttp2_submit_response2(session, stream_id, nva, nvlen, NULL);
    }
    nghttp2_data_provider2 provider;
    provider.source.ptr = (void *)body_read;
    provider.read_callback = CProxy_nghttp2_body_read_trampoline;
    return nghttp2_submit_response2(session, stream_id, nva, nvlen, &provider);
#else
    if (body_read == NULL) {
        return nghttp2_submit_response(session, stream_id, nva, nvlen, NULL);
    }
    nghttp2_data_provider provider;
    provider.source.ptr = (void *)body_read;
    provider.read_callback = CProxy_nghttp2_body_read_trampoline;
    return nghttp2_submit_response(session, stream_id, nva, nvlen, &provider);
#endif
}
#endif

#ifndef CPROXY_OPENSSL_SHIM_H
#define CPROXY_OPENSSL_SHIM_H
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <openssl/pem.h>
#include <openssl/bio.h>
#include <openssl/evp.h>

// Macros Swift cannot import, as functions with explicit types.
static inline long CProxy_SSL_set_tlsext_host_name(SSL *ssl, const char *name) {
    return SSL_set_tlsext_host_name(ssl, name);
}
static inline long CProxy_SSL_CTX_set_mode(SSL_CTX *ctx, long mode) {
    return SSL_CTX_set_mode(ctx, mode);
}
static inline long CProxy_SSL_CTX_set_min_proto_version(SSL_CTX *ctx, int version) {
    return SSL_CTX_set_min_proto_version(ctx, version);
}
static inline long CProxy_BIO_get_mem_data(BIO *bio, char **data) {
    return BIO_get_mem_data(bio, data);
}
static inline long CProxy_BIO_pending(BIO *bio) {
    return (long)BIO_ctrl_pending(bio);
}
static inline int CProxy_TLS1_2_VERSION(void) { return TLS1_2_VERSION; }
static inline long CProxy_SSL_MODE_RELEASE_BUFFERS(void) { return SSL_MODE_RELEASE_BUFFERS; }
static inline long CProxy_SSL_MODE_ENABLE_PARTIAL_WRITE(void) { return SSL_MODE_ENABLE_PARTIAL_WRITE; }
static inline long CProxy_SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER(void) { return SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER; }
static inline int CProxy_TLS1_3_VERSION(void) { return TLS1_3_VERSION; }
static inline long CProxy_SSL_CTX_set_max_proto_version(SSL_CTX *ctx, int version) {
    return SSL_CTX_set_max_proto_version(ctx, version);
}
/// Adds `x509` to the chain sent after the leaf certificate; takes its own reference (caller still owns `x509`).
static inline long CProxy_SSL_CTX_add1_chain_cert(SSL_CTX *ctx, X509 *x509) {
    return SSL_CTX_add1_chain_cert(ctx, x509);
}
/// EVP_PKEY_Q_keygen is variadic; a fixed EC form for Swift (tests generate throwaway keys with it).
static inline EVP_PKEY *CProxy_EVP_PKEY_generate_EC(const char *curve) {
    return EVP_PKEY_Q_keygen(NULL, NULL, "EC", curve);
}
#endif

/* SPDX-License-Identifier: MIT */
/*
 * TLS for https listeners: the certificate and key, the settings every
 * connection gets, and the bufferevent evhttp reads a connection through
 * (conn.c makes it in evhttp's bevcb; evhttp gives it its socket, and the
 * handshake starts then). Everything above the bufferevent (the head gate,
 * limits, timeouts, streams) sees plain bytes, as on a plain listener.
 *
 * What tls.c must never do: accept less than TLS 1.2, keep a renewed
 * certificate from new connections, or fail a reload in a way that leaves
 * no certificate at all (the old one stays until a new one loads).
 */
#include "tls.h"

#include <errno.h>
#include <event2/bufferevent_ssl.h>
#include <event2/bufferevent_struct.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct rill_tls {
    SSL_CTX *ctx;
    char *cert, *key;
};

/* TLS 1.2's suites with forward secrecy and an AEAD (TLS 1.3 has only such). */
static const char CIPHERS_12[] = "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20";

/* The only protocol this server speaks, as ALPN spells it. */
static const unsigned char ALPN_HTTP11[] = "\x08http/1.1";

/*
 * ALPN: http/1.1 when the client offers it. A client that offers only other
 * protocols (h2 alone) cannot talk to us: it gets no_application_protocol
 * now rather than a confusing reply later, as from nginx.
 */
static int on_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg)
{
    unsigned char *chosen = NULL;
    (void)ssl, (void)arg;
    if (SSL_select_next_proto(&chosen, outlen, ALPN_HTTP11, sizeof ALPN_HTTP11 - 1, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    *out = chosen;
    return SSL_TLSEXT_ERR_OK;
}

/* OpenSSL's reason for the last failure, its queue emptied. */
static const char *ssl_reason(void)
{
    unsigned long e = ERR_peek_last_error();
    const char *why = e ? ERR_reason_error_string(e) : NULL;
    ERR_clear_error();
    return why ? why : "not a PEM file OpenSSL can read";
}

/* Whether path can be read; if not, a line in err. */
static int readable(const char *what, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "cannot read the TLS %s %s: %s", what, path, strerror(errno));
        return 0;
    }
    fclose(f);
    return 1;
}

static SSL_CTX *context_new(const char *cert, const char *key, char *err, size_t errlen)
{
    if (!readable("certificate", cert, err, errlen) || !readable("key", key, err, errlen))
        return NULL;
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        snprintf(err, errlen, "cannot set up TLS: %s", ssl_reason());
        return NULL;
    }
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
        snprintf(err, errlen, "cannot set up TLS: %s", ssl_reason());
        goto fail;
    }
    /*
     * A client that closes without close_notify is a plain EOF: HTTP frames
     * its own end (OpenSSL 3 would report an error).
     */
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_dh_auto(ctx, 1); /* the DHE suites need parameters: OpenSSL's, by key size */
    /*
     * No server-side session cache (as nginx's default): TLS 1.3 resumes by
     * ticket, and an idle connection's session is not kept twice.
     */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    /* an idle connection (most streams) keeps no read or write buffer: ~34 KiB each */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"rill", 4);
    SSL_CTX_set_alpn_select_cb(ctx, on_alpn, NULL);
    if (SSL_CTX_set_cipher_list(ctx, CIPHERS_12) != 1) {
        snprintf(err, errlen, "cannot set up TLS: %s", ssl_reason());
        goto fail;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        snprintf(err, errlen, "cannot use the TLS certificate %s: %s", cert, ssl_reason());
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH)
            goto mismatch;
        snprintf(err, errlen, "cannot use the TLS key %s: %s", key, ssl_reason());
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
    mismatch:
        snprintf(err, errlen, "the TLS key %s is not the key of the certificate %s", key, cert);
        ERR_clear_error();
        goto fail;
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

struct rill_tls *rill_tls_new(const char *cert, const char *key, char *err, size_t errlen)
{
    struct rill_tls *t = calloc(1, sizeof *t);
    if (!t || !(t->cert = strdup(cert)) || !(t->key = strdup(key))) {
        snprintf(err, errlen, "cannot set up TLS: out of memory");
        rill_tls_free(t);
        return NULL;
    }
    if (!(t->ctx = context_new(cert, key, err, errlen))) {
        rill_tls_free(t);
        return NULL;
    }
    return t;
}

int rill_tls_reload(struct rill_tls *t, char *err, size_t errlen)
{
    SSL_CTX *fresh = context_new(t->cert, t->key, err, errlen);
    if (!fresh)
        return -1;
    SSL_CTX_free(t->ctx); /* a reference each open connection's SSL holds keeps it for them */
    t->ctx = fresh;
    return 0;
}

struct bufferevent *rill_tls_bufferevent(struct rill_tls *t, struct event_base *base)
{
    SSL *ssl = SSL_new(t->ctx);
    if (!ssl)
        return NULL;
    /*
     * BEV_OPT_CLOSE_ON_FREE: only with it does the bufferevent free its SSL
     * (and close the socket, which evhttp then leaves to it).
     */
    struct bufferevent *bev = bufferevent_openssl_socket_new(
        base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    if (!bev)
        return NULL; /* its failure freed ssl (BEV_OPT_CLOSE_ON_FREE) */
    /* HTTP frames its own end: a client that closes without close_notify lost nothing */
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1); /* and SSL_OP_IGNORE_UNEXPECTED_EOF */
    return bev;
}

int rill_tls_ready(struct bufferevent *bev)
{
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    return ssl && SSL_is_init_finished(ssl);
}

void rill_tls_close_notify(struct bufferevent *bev)
{
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    if (ssl && SSL_is_init_finished(ssl) && !(SSL_get_shutdown(ssl) & SSL_SENT_SHUTDOWN)) {
        (void)SSL_shutdown(ssl); /* a non-blocking socket: what fits goes, nothing is awaited */
        ERR_clear_error();
    }
}

void rill_tls_kick(struct bufferevent *bev)
{
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    if (ssl && SSL_has_pending(ssl))
        event_active(&bev->ev_read, EV_READ, 1); /* its read callback reads from the SSL */
}

int rill_tls_is(struct bufferevent *bev)
{
    return bev && bufferevent_openssl_get_ssl(bev) != NULL;
}

void rill_tls_free(struct rill_tls *t)
{
    if (!t)
        return;
    SSL_CTX_free(t->ctx);
    free(t->cert);
    free(t->key);
    free(t);
}

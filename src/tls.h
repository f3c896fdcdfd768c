/* tls.h — a TLS stream over memory, under the HTTP code (OpenSSL 3).
 *
 * An sl_tls_t turns ciphertext into plaintext and back without touching a
 * socket, as HAProxy's ssl_sock and nginx's ngx_event_openssl sit between
 * the transport and the HTTP layer: the owner reads ciphertext from its
 * transport (a libuv read callback), feeds it in (sl_tls_feed), and reads
 * plaintext out (sl_tls_read) into its usual parse path; plaintext written
 * with sl_tls_write becomes ciphertext that sl_tls_flush writes through
 * sl_io_write, so the transport's write_queue_size is the backpressure, as
 * for plain bytes. The stream never owns the transport, which is why the
 * same stream can later run over a CONNECT tunnel to a parent proxy: the
 * ciphertext then simply flows through the tunnel's connection once its
 * 200 arrived (docs/design.md).
 *
 * Input: an OpenSSL memory BIO holds ciphertext fed and not yet decrypted
 * (when the owner's plaintext buffer was full), so nothing is lost when the
 * owner stops reading; sl_tls_has_input says that some is waiting.
 * Output: handshake messages, records and alerts are appended to a buffer
 * the owner lends at creation (one per worker thread: every call is
 * followed by sl_tls_flush, so it is empty between calls and shared by
 * every stream of the thread).
 *
 * A TCP EOF is not given to OpenSSL: the owner decides. An EOF before the
 * peer's close_notify is a truncation when the framing needed the end
 * (SSL_OP_IGNORE_UNEXPECTED_EOF is never set). Renegotiation is refused;
 * TLS 1.2 is the minimum; ALPN offers and accepts http/1.1 only.
 */
#ifndef SL_TLS_H
#define SL_TLS_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <uv.h>

#include "buf.h"

typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_session_st SSL_SESSION;
typedef struct sl_tls sl_tls_t;

#define SL_TLS_CLOSED (-1) /* sl_tls_read: the peer sent close_notify */
#define SL_TLS_FAILED (-2) /* sl_tls_read / sl_tls_handshake: fatal; sl_tls_reason says why */

/* ---- contexts (main thread, at start and on SIGHUP) ----------------------- */

/* The context for connections to a server (sluice's upstream, or
 * sluice-load's target): verification against ca_file (PEM; NULL: the
 * system store, Debian's ca-certificates) unless insecure. ca_option names
 * the flag that gave ca_file, for the message. Returns NULL with one
 * sentence in err. */
SSL_CTX *sl_tls_client_ctx(const char *ca_file, bool insecure, const char *ca_option, char *err, size_t errlen);

/* The listener's certificate: a refcounted SSL_CTX behind a mutex, so
 * SIGHUP can swap it while workers accept. A connection's SSL holds its own
 * reference to the context it started with, so a swap never disturbs it. */
typedef struct sl_tls_listener {
	pthread_mutex_t mu;
	SSL_CTX *ctx;
} sl_tls_listener_t;

/* Loads cert_file (PEM, the leaf first, then the chain) and key_file (PEM)
 * and checks that they match. Returns 0, or -1 with one sentence naming the
 * file in err. */
int sl_tls_listener_init(sl_tls_listener_t *l, const char *cert_file, const char *key_file, char *err, size_t errlen);

/* Reloads the same paths (SIGHUP): new connections get the new certificate.
 * On failure (-1, err set) the old one stays in force. */
int sl_tls_listener_reload(sl_tls_listener_t *l, const char *cert_file, const char *key_file, char *err, size_t errlen);
void sl_tls_listener_dispose(sl_tls_listener_t *l);

/* ---- streams (one worker thread each) --------------------------------------- */

/* A client-side stream to the upstream. name: the SNI host name, and the
 * name the certificate must carry (an IP address literal is checked as an
 * IP and sent without SNI, RFC 6066 §3). cache: the thread's slot for the
 * last session (resumed on the next connection; refreshed by the server's
 * tickets). out: the thread's output buffer. */
sl_tls_t *sl_tls_new_client(SSL_CTX *ctx, const char *name, SSL_SESSION **cache, sl_buf_t *out);

/* A server-side stream for a connection accepted on the listener. */
sl_tls_t *sl_tls_new_server(sl_tls_listener_t *l, sl_buf_t *out);

void sl_tls_free(sl_tls_t *t);

/* Ciphertext read from the transport. */
void sl_tls_feed(sl_tls_t *t, const char *data, size_t len);

/* Advances the handshake on what was fed: 1 done, 0 needs more input,
 * SL_TLS_FAILED (sl_tls_reason). Output may follow: flush. */
int sl_tls_handshake(sl_tls_t *t);
bool sl_tls_handshake_done(const sl_tls_t *t);

/* Decrypts into buf (len bytes): the count (> 0), 0 when more input is
 * needed, SL_TLS_CLOSED after close_notify, SL_TLS_FAILED. */
ssize_t sl_tls_read(sl_tls_t *t, char *buf, size_t len);

/* Whether fed input waits to be read: ciphertext or decrypted bytes. */
bool sl_tls_has_input(const sl_tls_t *t);

/* Encrypts bufs[0..n) into the output. 0, or SL_TLS_FAILED. */
int sl_tls_write(sl_tls_t *t, const uv_buf_t *bufs, unsigned n);

/* Queues close_notify (once). */
void sl_tls_close_notify(sl_tls_t *t);

/* Writes the pending output to s with sl_io_write (same cb and wrote
 * semantics; cb only for a queued remainder) and empties it. Returns 0 or
 * a negative uv error. */
int sl_tls_flush(sl_tls_t *t, uv_stream_t *s, uv_write_cb cb, bool *wrote);

/* The pending output, for an owner with no libuv stream (tests). */
sl_buf_t *sl_tls_output(sl_tls_t *t);

/* Fit for another exchange (a pooled upstream connection): handshake done,
 * nothing buffered either way, no alert received or sent. */
bool sl_tls_clean(const sl_tls_t *t);

/* Whether the handshake resumed a session. */
bool sl_tls_resumed(const sl_tls_t *t);

/* Why the stream failed, e.g. "certificate verify failed: Hostname
 * mismatch" (valid until the stream is freed). */
const char *sl_tls_reason(const sl_tls_t *t);

#endif

/* worker.h — one sluice-upstream worker: a thread running its own libuv loop
 * with its own listening socket. All workers' sockets are bound to the same
 * address with SO_REUSEPORT, so the kernel spreads connections over them and
 * the workers share nothing but the counters, the request log and the
 * fail_times map.
 *
 * Lifetime: sl_up_listen_fd() (main thread) -> sl_up_worker_new() ->
 * sl_up_worker_start() -> sl_up_worker_stop() (any thread) ->
 * sl_up_worker_free() (joins the thread, closes the loop). */
#ifndef SL_UP_WORKER_H
#define SL_UP_WORKER_H

#include <stdint.h>

#include <uv.h>

typedef struct sl_up_worker sl_up_worker_t;

/* A listening TCP socket on host:port with SO_REUSEPORT, made by sluice's
 * own sl_listener_bind() (libuv 1.44 cannot set SO_REUSEPORT itself) and
 * handed to uv_tcp_open(). Returns the fd, or -1 with a sentence in err.
 * *port_out gets the bound port (useful when port is 0). */
int sl_up_listen_fd(const char *host, int port, int *port_out, char *err, size_t errlen);

/* A worker that will serve listening socket fd (which it then owns).
 * idle_timeout_ms 0 keeps idle connections forever. Returns NULL on failure
 * (fd is closed). */
sl_up_worker_t *sl_up_worker_new(int fd, uint64_t idle_timeout_ms);

/* Starts the worker's thread. Returns 0 or a negative libuv error. */
int sl_up_worker_start(sl_up_worker_t *w);

/* Asks the worker to close its listener and connections and end its loop.
 * Thread-safe, idempotent. */
void sl_up_worker_stop(sl_up_worker_t *w);

/* Joins the thread (if started) and frees everything. */
void sl_up_worker_free(sl_up_worker_t *w);

#endif

/* listener.h — listening sockets. Each worker gets its own socket on the
 * same address with SO_REUSEPORT, so the kernel spreads new connections
 * across workers with no shared accept lock and no hand-off between threads.
 *
 * SO_REUSEPORT would also let a second sluice (or anything else) bind the
 * same port and silently take half the traffic with another configuration.
 * So unless sharing is asked for (--reuse-port, for zero-downtime restarts),
 * the port is first probed with a plain bind, which fails while any other
 * socket listens there, and the start is refused naming the process that
 * holds it, as nginx refuses a port in use.
 */
#ifndef SL_LISTENER_H
#define SL_LISTENER_H

#include <stdbool.h>
#include <stddef.h>

typedef enum {
	SL_LISTEN_ALONE,  /* a plain socket: fails if the port is in use */
	SL_LISTEN_WORKER, /* one of the workers' SO_REUSEPORT sockets */
} sl_listen_mode_t;

/* Binds and listens on host:port (host: an address or a name). option names
 * the flag that chose the port ("--listen-port"), for the message. Returns
 * the descriptor, or -1 with one sentence in err (a port in use names the
 * process holding it when /proc shows it, and the fix). */
int sl_listener_bind(const char *host, int port, sl_listen_mode_t mode, const char *option, char *err, size_t errlen);

/* Whether host:port is free for a new listener: a plain bind succeeds. 0 if
 * so; -1 with the same sentence as sl_listener_bind when it is taken. */
int sl_listener_probe(const char *host, int port, const char *option, char *err, size_t errlen);

#endif

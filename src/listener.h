/* listener.h — listening sockets. Each worker gets its own socket on the
 * same address with SO_REUSEPORT, so the kernel spreads new connections
 * across workers with no shared accept lock and no hand-off between threads.
 */
#ifndef SL_LISTENER_H
#define SL_LISTENER_H

#include <stdbool.h>
#include <stddef.h>

/* Binds and listens on host:port (host: an address or a name). Returns the
 * descriptor, or -1 with one sentence in err. */
int sl_listener_bind(const char *host, int port, bool reuseport, char *err, size_t errlen);

#endif

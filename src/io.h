/* io.h — writing to a libuv stream without holding the caller's memory.
 *
 * sl_io_write() first tries a direct write (uv_try_write: no allocation, no
 * copy, the common case on an uncongested socket); whatever the kernel did
 * not take is copied into one heap block and queued with uv_write, so the
 * caller may reuse its buffers at once. The stream's write_queue_size then
 * tells the caller how far behind the peer is, for backpressure.
 */
#ifndef SL_IO_H
#define SL_IO_H

#include <stdbool.h>
#include <uv.h>

/* Writes bufs[0..n). cb (may be NULL) runs when a queued remainder has been
 * written or failed; it does not run when everything went out directly.
 * *wrote is set true when any byte reached the kernel or was queued.
 * Returns 0 or a negative uv error (nothing queued then; cb never runs). */
int sl_io_write(uv_stream_t *s, const uv_buf_t *bufs, unsigned n, uv_write_cb cb, bool *wrote);

/* Frees the request of a completed queued write; call it first in cb. */
void sl_io_write_done(uv_write_t *req);

#endif

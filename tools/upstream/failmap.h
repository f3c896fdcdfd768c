/* failmap.h — how many requests have carried each fail_times key, shared by
 * all workers, so that `status=503&fail_times=1&key=x` fails exactly the
 * first request with key x whichever worker it lands on.
 *
 * Bounded: at most SL_UP_FAILMAP_CAP keys are remembered; beyond that the
 * oldest key is forgotten (and would count from zero again). Keys are
 * compared on at most SL_UP_KEY_MAX bytes. */
#ifndef SL_UP_FAILMAP_H
#define SL_UP_FAILMAP_H

#include <stddef.h>
#include <stdint.h>

#define SL_UP_FAILMAP_CAP 1024

/* Counts one more request with key (len bytes) and returns how many there
 * have been, this one included (so the first call for a key returns 1). */
uint64_t sl_up_failmap_hit(const char *key, size_t len);

#endif

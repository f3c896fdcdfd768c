/* failmap.c — see failmap.h. A linear scan of a fixed table under one mutex:
 * only requests that name a key come here, and a scan of 1024 short keys
 * costs about a microsecond, far below what a hash table would save. */
#include "failmap.h"

#include <pthread.h>
#include <string.h>

#include "params.h"

typedef struct slot {
	char key[SL_UP_KEY_MAX];
	size_t len;
	uint64_t hits;
} slot_t;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static slot_t slots[SL_UP_FAILMAP_CAP];
static size_t used;       /* slots[0..used) hold keys */
static size_t next_evict; /* once full: the oldest key's slot, round robin */

uint64_t sl_up_failmap_hit(const char *key, size_t len)
{
	if (len > SL_UP_KEY_MAX)
		len = SL_UP_KEY_MAX;
	pthread_mutex_lock(&lock);
	slot_t *s = NULL;
	for (size_t i = 0; i < used; i++) {
		if (slots[i].len == len && !memcmp(slots[i].key, key, len)) {
			s = &slots[i];
			break;
		}
	}
	if (!s) {
		if (used < SL_UP_FAILMAP_CAP) {
			s = &slots[used++];
		} else {
			s = &slots[next_evict];
			next_evict = (next_evict + 1) % SL_UP_FAILMAP_CAP;
		}
		memcpy(s->key, key, len);
		s->len = len;
		s->hits = 0;
	}
	uint64_t hits = ++s->hits;
	pthread_mutex_unlock(&lock);
	return hits;
}

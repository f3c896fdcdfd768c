/* stat.h — counters written by one thread and read by others.
 *
 * Each counter has a single writer (its worker). Relaxed atomic loads and
 * stores make concurrent reads well-defined and compile to plain moves; an
 * increment is a load and a store, with no locked instruction, because no
 * other thread writes the same counter. Readers accept a view that may be a
 * few events stale.
 */
#ifndef SL_STAT_H
#define SL_STAT_H

#define SL_LOAD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define SL_STORE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)
#define SL_BUMP(x, n) SL_STORE(x, SL_LOAD(x) + (n))

#endif

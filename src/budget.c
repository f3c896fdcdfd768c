/* budget.c — see budget.h. */
#include "budget.h"

uint32_t sl_budget_allowance(uint32_t requests, uint32_t percent, uint32_t min)
{
	uint64_t share = (uint64_t)requests * percent / 100;
	return share > min ? (uint32_t)share : min;
}

int sl_budget_bucket_step(int milli_tokens, bool failed)
{
	int next = milli_tokens + (failed ? -SL_BUDGET_FAILURE_MILLI : SL_BUDGET_RATIO_MILLI);
	return next < 0 ? 0 : next > SL_BUDGET_TOKENS_MILLI ? SL_BUDGET_TOKENS_MILLI : next;
}

bool sl_budget_bucket_allows(int milli_tokens)
{
	return milli_tokens > SL_BUDGET_TOKENS_MILLI / 2;
}

void sl_budget_init(sl_budget_t *b)
{
	atomic_init(&b->retrying, 0);
	atomic_init(&b->milli_tokens, SL_BUDGET_TOKENS_MILLI);
}

void sl_budget_record(sl_budget_t *b, bool failed)
{
	int cur = atomic_load_explicit(&b->milli_tokens, memory_order_relaxed);
	if (!failed && cur == SL_BUDGET_TOKENS_MILLI)
		return; /* the common case: a full bucket and an answer, no write at all */
	while (!atomic_compare_exchange_weak_explicit(&b->milli_tokens, &cur, sl_budget_bucket_step(cur, failed),
	                                              memory_order_relaxed, memory_order_relaxed))
		;
}

bool sl_budget_try_retry(sl_budget_t *b, bool retrying, uint32_t requests, uint32_t percent, uint32_t min)
{
	if (!sl_budget_bucket_allows(atomic_load_explicit(&b->milli_tokens, memory_order_relaxed)))
		return false;
	if (retrying)
		return true;
	int allowance = (int)sl_budget_allowance(requests, percent, min);
	int n = atomic_load_explicit(&b->retrying, memory_order_relaxed);
	do {
		if (n >= allowance)
			return false;
	} while (!atomic_compare_exchange_weak_explicit(&b->retrying, &n, n + 1, memory_order_relaxed,
	                                                memory_order_relaxed));
	return true;
}

bool sl_budget_throttled(sl_budget_t *b)
{
	return !sl_budget_bucket_allows(atomic_load_explicit(&b->milli_tokens, memory_order_relaxed));
}

void sl_budget_retry_done(sl_budget_t *b)
{
	atomic_fetch_sub_explicit(&b->retrying, 1, memory_order_relaxed);
}

uint32_t sl_budget_retrying(sl_budget_t *b)
{
	int n = atomic_load_explicit(&b->retrying, memory_order_relaxed);
	return n > 0 ? (uint32_t)n : 0;
}

double sl_budget_tokens(sl_budget_t *b)
{
	return atomic_load_explicit(&b->milli_tokens, memory_order_relaxed) / 1000.0;
}

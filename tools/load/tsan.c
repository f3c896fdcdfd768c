/* tsan.c — ThreadSanitizer suppressions built into sluice-load (only in a
 * -fsanitize=thread build; empty otherwise).
 *
 * Why: Debian's libuv closes descriptors with a raw syscall(SYS_close) that
 * TSan cannot intercept, so when one worker thread closes a socket and
 * another's socket()/pipe2()/eventfd()/epoll_create1() gets the same number
 * back, TSan sees two "writes" to one descriptor without the close between
 * them and reports a race that is not there. Only those descriptor-creating
 * interceptors are named (anchored), so any race in our own code, or on
 * memory inside libuv, is still reported. */
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SL_LOAD_TSAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define SL_LOAD_TSAN 1
#endif

#ifdef SL_LOAD_TSAN
const char *__tsan_default_suppressions(void);

const char *__tsan_default_suppressions(void)
{
	/* the interceptors' symbols are __interceptor_<name> (printed without
	 * the prefix); both spellings, anchored */
	return "race:^socket$\n"
	       "race:^pipe2$\n"
	       "race:^eventfd$\n"
	       "race:^epoll_create1$\n"
	       "race:^timerfd_create$\n"
	       "race:^__interceptor_socket$\n"
	       "race:^__interceptor_pipe2$\n"
	       "race:^__interceptor_eventfd$\n"
	       "race:^__interceptor_epoll_create1$\n"
	       "race:^__interceptor_timerfd_create$\n";
}
#else
typedef int sl_load_tsan_unused_t; /* ISO C wants something in a file */
#endif

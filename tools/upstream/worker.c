/* worker.c — see worker.h. Every handle of a worker lives on its loop and is
 * created before the thread starts; after stop, the loop runs until the last
 * close callback, so uv_loop_close() finds nothing left. */
#include "worker.h"

#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"
#include "listener.h"

#define BACKLOG 4096 /* as listen(2) used it in listener.c */

struct sl_up_worker {
	uv_loop_t loop;
	uv_tcp_t listener;
	uv_async_t stop;
	uv_thread_t thread;
	sl_up_conns_t conns;
	bool started;
};

int sl_up_listen_fd(const char *host, int port, int *port_out, char *err, size_t errlen)
{
	int fd = sl_listener_bind(host, port, SL_LISTEN_WORKER, "--port", err, errlen);
	if (fd < 0)
		return -1;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	*port_out = port;
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
		*port_out = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
		                                           : ((struct sockaddr_in *)&ss)->sin_port);
	return fd;
}

static void on_connection(uv_stream_t *server, int status)
{
	sl_up_worker_t *w = server->data;
	if (status < 0)
		return;
	/* A failed accept (EMFILE, ENOMEM) drops that one connection; libuv
	 * retries the rest on the next loop turn. */
	sl_up_conn_accept(server, &w->conns);
}

static void on_stop(uv_async_t *a)
{
	sl_up_worker_t *w = a->data;
	uv_close((uv_handle_t *)&w->listener, NULL);
	sl_up_conns_close_all(&w->conns);
	uv_close((uv_handle_t *)&w->stop, NULL);
}

sl_up_worker_t *sl_up_worker_new(int fd, uint64_t idle_timeout_ms)
{
	sl_up_worker_t *w = calloc(1, sizeof *w);
	if (!w || uv_loop_init(&w->loop) < 0) {
		free(w);
		close(fd);
		return NULL;
	}
	sl_up_conns_init(&w->conns, idle_timeout_ms);
	uv_tcp_init(&w->loop, &w->listener);
	uv_async_init(&w->loop, &w->stop, on_stop);
	w->listener.data = w->stop.data = w;
	int err = uv_tcp_open(&w->listener, fd);
	if (err < 0)
		close(fd); /* otherwise the listener owns fd and closes it */
	else
		err = uv_listen((uv_stream_t *)&w->listener, BACKLOG, on_connection);
	if (err < 0) {
		uv_close((uv_handle_t *)&w->listener, NULL);
		uv_close((uv_handle_t *)&w->stop, NULL);
		uv_run(&w->loop, UV_RUN_DEFAULT);
		uv_loop_close(&w->loop);
		free(w);
		return NULL;
	}
	return w;
}

static void do_run(void *arg)
{
	sl_up_worker_t *w = arg;
	uv_run(&w->loop, UV_RUN_DEFAULT);
}

int sl_up_worker_start(sl_up_worker_t *w)
{
	int err = uv_thread_create(&w->thread, do_run, w);
	if (err == 0)
		w->started = true;
	return err;
}

void sl_up_worker_stop(sl_up_worker_t *w)
{
	uv_async_send(&w->stop);
}

void sl_up_worker_free(sl_up_worker_t *w)
{
	if (!w)
		return;
	if (w->started) {
		uv_thread_join(&w->thread);
	} else {
		/* Never ran: close the handles here. */
		on_stop(&w->stop);
		uv_run(&w->loop, UV_RUN_DEFAULT);
	}
	if (uv_loop_close(&w->loop) != 0)
		fprintf(stderr, "sluice-upstream: a worker loop still had handles at exit\n");
	free(w);
}

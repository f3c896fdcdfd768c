/* listener.c — see listener.h. */
#include "listener.h"

#include <dirent.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define SL_BACKLOG 4096 /* the kernel caps it at net.core.somaxconn */

/* The inode of a socket listening on port, from /proc/net/tcp and tcp6, or 0. */
static unsigned long listening_inode(int port)
{
	static const char *const tables[] = {"/proc/net/tcp", "/proc/net/tcp6"};
	for (int t = 0; t < 2; t++) {
		FILE *f = fopen(tables[t], "r");
		if (!f)
			continue;
		char line[512];
		unsigned long inode = 0;
		while (!inode && fgets(line, sizeof line, f)) {
			char local[64];
			unsigned st;
			unsigned long ino;
			/* "  0: 0100007F:1F90 00000000:0000 0A ... uid timeout inode" */
			if (sscanf(line, "%*d: %63s %*s %x %*s %*s %*s %*s %*s %lu", local, &st, &ino) != 3)
				continue;
			const char *colon = strrchr(local, ':');
			if (colon && st == 0x0A && strtol(colon + 1, NULL, 16) == port)
				inode = ino;
		}
		fclose(f);
		if (inode)
			return inode;
	}
	return 0;
}

/* "pid 1234 (nginx)" for the process holding socket inode, or "" when
 * /proc does not show it (another user's process, without privileges). */
static void owner_of(unsigned long inode, char *out, size_t len)
{
	out[0] = '\0';
	char want[48];
	snprintf(want, sizeof want, "socket:[%lu]", inode);
	DIR *proc = opendir("/proc");
	if (!proc)
		return;
	for (struct dirent *p; !out[0] && (p = readdir(proc)) != NULL;) {
		char *end;
		long pid = strtol(p->d_name, &end, 10);
		if (*end != '\0' || pid <= 0 || pid == getpid())
			continue;
		char path[64];
		snprintf(path, sizeof path, "/proc/%ld/fd", pid);
		DIR *fds = opendir(path);
		if (!fds)
			continue;
		for (struct dirent *fd; !out[0] && (fd = readdir(fds)) != NULL;) {
			char link[64 + sizeof fd->d_name], target[64];
			snprintf(link, sizeof link, "%s/%s", path, fd->d_name);
			ssize_t n = readlink(link, target, sizeof target - 1);
			if (n <= 0)
				continue;
			target[n] = '\0';
			if (strcmp(target, want) != 0)
				continue;
			char comm[64] = "?";
			snprintf(path, sizeof path, "/proc/%ld/comm", pid);
			FILE *f = fopen(path, "r");
			if (f && fgets(comm, sizeof comm, f))
				comm[strcspn(comm, "\n")] = '\0';
			if (f)
				fclose(f);
			snprintf(out, len, "pid %ld (%s)", pid, comm);
		}
		closedir(fds);
	}
	closedir(proc);
}

static int in_use(const char *host, int port, const char *option, char *err, size_t errlen)
{
	char owner[96] = "";
	unsigned long inode = listening_inode(port);
	if (inode)
		owner_of(inode, owner, sizeof owner);
	bool shareable = strcmp(option, "--listen-port") == 0; /* the admin port is never shared */
	snprintf(err, errlen, "cannot listen on %s:%d: the port is in use%s%s; stop that process%s %s%s", host, port,
	         owner[0] ? " by " : "", owner, shareable ? ", choose another" : " or choose another", option,
	         shareable ? ", or pass --reuse-port to share the port on purpose" : "");
	return -1;
}

static int do_bind(const char *host, int port, sl_listen_mode_t mode, bool listen_too, const char *option, char *err,
                   size_t errlen)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
	struct addrinfo *res = NULL;
	char service[8];
	snprintf(service, sizeof service, "%d", port);
	int rc = getaddrinfo(host, service, &hints, &res);
	if (rc != 0) {
		snprintf(err, errlen, "cannot resolve listen address %s: %s", host, gai_strerror(rc));
		return -1;
	}
	int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "cannot create a socket: %s", strerror(errno));
		freeaddrinfo(res);
		return -1;
	}
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (mode == SL_LISTEN_WORKER)
		setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
	if (bind(fd, res->ai_addr, res->ai_addrlen) != 0 || (listen_too && listen(fd, SL_BACKLOG) != 0)) {
		int e = errno;
		close(fd);
		freeaddrinfo(res);
		if (e == EADDRINUSE)
			return in_use(host, port, option, err, errlen);
		snprintf(err, errlen, "cannot listen on %s:%d: %s", host, port, strerror(e));
		return -1;
	}
	freeaddrinfo(res);
	return fd;
}

int sl_listener_bind(const char *host, int port, sl_listen_mode_t mode, const char *option, char *err, size_t errlen)
{
	return do_bind(host, port, mode, true, option, err, errlen);
}

int sl_listener_probe(const char *host, int port, const char *option, char *err, size_t errlen)
{
	int fd = do_bind(host, port, SL_LISTEN_ALONE, false, option, err, errlen);
	if (fd < 0)
		return -1;
	close(fd);
	return 0;
}

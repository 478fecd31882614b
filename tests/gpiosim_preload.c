/*
 * A userspace stand-in for the kernel's gpio-sim, for machines that have neither GPIO nor the
 * gpio-sim module (CI containers): LD_PRELOAD it into a process, point GPIOSIM_SOCKET at the
 * simulator's socket (tests/gpiosim.py), and libgpiod in that process sees /dev/gpiochipN.
 *
 * The hardware edge is the kernel's GPIO character device API (uAPI v2), so that is what is
 * replaced, and nothing above it: libgpiod and its Python binding run unchanged.
 *
 *  - stat/lstat of /dev/gpiochipN report a character device, and realpath of its
 *    /sys/dev/char/M:N/subsystem answers /sys/bus/gpio: the checks gpiod_chip_open makes.
 *  - open of /dev/gpiochipN returns a socket connected to the simulator.
 *  - ioctl on such a socket sends the ioctl's argument (its size is in the request number) to
 *    the simulator and copies back what it answers. GPIO_V2_GET_LINE_IOCTL also makes a socket
 *    pair, passes one end to the simulator (with the chip's number, in place of the ioctl's)
 *    and returns the other as the line request's fd: the
 *    simulator writes struct gpio_v2_line_event records into it, so read() and poll() on a line
 *    request are the kernel's own. Ioctls on that fd go over a connection of its own.
 *  - close of either kind of fd closes what goes with it; the simulator sees the line released.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/gpio.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#define SIM_MAJOR 254
#define MAX_FDS 65536
enum { OP_OPEN = 1, OP_IOCTL = 2, OP_REQUEST = 3 };

struct header { uint32_t op; uint32_t len; uint64_t request; };
struct reply { int32_t result; int32_t err; uint32_t len; uint32_t pad; };

/* fd -> (connection to the simulator) + 1; 0 for an fd that is not ours. */
static int conn_of[MAX_FDS];
/* chip fd -> its chip number (a line request names its chip to the simulator). */
static int chip_of[MAX_FDS];
static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;

#define REAL(name) static __typeof__(name) *real_##name; \
	if (!real_##name) real_##name = (__typeof__(name) *)dlsym(RTLD_NEXT, #name)

static int chip_number(const char *path)
{
	char *end;
	long n;

	if (!path || !getenv("GPIOSIM_SOCKET") || strncmp(path, "/dev/gpiochip", 13) != 0)
		return -1;
	n = strtol(path + 13, &end, 10);
	return (end == path + 13 || *end || n < 0 || n > 255) ? -1 : (int)n;
}

static int conn_for(int fd)
{
	int conn;

	if (fd < 0 || fd >= MAX_FDS)
		return -1;
	pthread_mutex_lock(&table_lock);
	conn = conn_of[fd] - 1;
	pthread_mutex_unlock(&table_lock);
	return conn;
}

static int remember(int fd, int conn, int chip)
{
	if (fd < 0 || fd >= MAX_FDS) {
		errno = EMFILE;
		return -1;
	}
	pthread_mutex_lock(&table_lock);
	conn_of[fd] = conn + 1;
	chip_of[fd] = chip;
	pthread_mutex_unlock(&table_lock);
	return 0;
}

static int all(int fd, void *buf, size_t len, int writing)
{
	char *p = buf;

	while (len) {
		ssize_t n = writing ? send(fd, p, len, MSG_NOSIGNAL) : recv(fd, p, len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int sim_connect(void)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (s < 0)
		return -1;
	strncpy(addr.sun_path, getenv("GPIOSIM_SOCKET"), sizeof(addr.sun_path) - 1);
	if (connect(s, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		int e = errno;
		close(s);
		errno = e;
		return -1;
	}
	return s;
}

/* One request to the simulator; the answer is copied into buf. -1 with errno on failure. */
static int call(int conn, uint32_t op, unsigned long request, void *buf, uint32_t len, int pass_fd)
{
	struct header h = { op, len, request };
	struct iovec iov = { &h, sizeof(h) };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	char control[CMSG_SPACE(sizeof(int))];
	struct reply r;

	if (pass_fd >= 0) {
		struct cmsghdr *c;

		memset(control, 0, sizeof(control));
		msg.msg_control = control;
		msg.msg_controllen = sizeof(control);
		c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &pass_fd, sizeof(int));
	}
	if (sendmsg(conn, &msg, MSG_NOSIGNAL) != (ssize_t)sizeof(h) ||
	    (len && all(conn, buf, len, 1) < 0) || all(conn, &r, sizeof(r), 0) < 0 ||
	    r.len > len || (r.len && all(conn, buf, r.len, 0) < 0)) {
		errno = EIO;
		return -1;
	}
	if (r.result < 0) {
		errno = r.err;
		return -1;
	}
	return r.result;
}

static int open_chip(int n)
{
	uint32_t chip = (uint32_t)n;
	int s = sim_connect();

	if (s < 0)
		return -1;
	if (call(s, OP_OPEN, 0, &chip, sizeof(chip), -1) < 0) {
		int e = errno;
		close(s);
		errno = e;
		return -1;
	}
	if (remember(s, s, n) < 0) {
		close(s);
		errno = EMFILE;
		return -1;
	}
	return s;
}

static int request_lines(int chip_fd, void *arg)
{
	struct gpio_v2_line_request *req = arg;
	int pair[2], conn;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) < 0)
		return -1;
	conn = sim_connect();
	if (conn < 0 || call(conn, OP_REQUEST, (unsigned long)chip_of[chip_fd], req, sizeof(*req), pair[1]) < 0) {
		int e = errno;
		if (conn >= 0)
			close(conn);
		close(pair[0]);
		close(pair[1]);
		errno = e;
		return -1;
	}
	close(pair[1]);
	if (remember(pair[0], conn, -1) < 0) {
		close(pair[0]);
		close(conn);
		errno = EMFILE;
		return -1;
	}
	req->fd = pair[0];
	return 0;
}

/* ------------------------------------------------------------------------------ wrappers */
#define OPEN_WRAPPER(name) \
int name(const char *path, int flags, ...) \
{ \
	mode_t mode = 0; \
	int n = chip_number(path); \
	REAL(name); \
	if ((flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE) { \
		va_list ap; \
		va_start(ap, flags); \
		mode = va_arg(ap, mode_t); \
		va_end(ap); \
	} \
	return n >= 0 ? open_chip(n) : real_##name(path, flags, mode); \
}
OPEN_WRAPPER(open)
OPEN_WRAPPER(open64)

#define OPENAT_WRAPPER(name) \
int name(int dirfd, const char *path, int flags, ...) \
{ \
	mode_t mode = 0; \
	int n = chip_number(path); \
	REAL(name); \
	if ((flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE) { \
		va_list ap; \
		va_start(ap, flags); \
		mode = va_arg(ap, mode_t); \
		va_end(ap); \
	} \
	return n >= 0 ? open_chip(n) : real_##name(dirfd, path, flags, mode); \
}
OPENAT_WRAPPER(openat)
OPENAT_WRAPPER(openat64)

int __open_2(const char *path, int flags)
{
	int n = chip_number(path);
	REAL(__open_2);
	return n >= 0 ? open_chip(n) : real___open_2(path, flags);
}

int __open64_2(const char *path, int flags)
{
	int n = chip_number(path);
	REAL(__open64_2);
	return n >= 0 ? open_chip(n) : real___open64_2(path, flags);
}

int ioctl(int fd, unsigned long request, ...)
{
	va_list ap;
	void *arg;
	int conn = conn_for(fd);
	REAL(ioctl);

	va_start(ap, request);
	arg = va_arg(ap, void *);
	va_end(ap);
	if (conn < 0)
		return real_ioctl(fd, request, arg);
	if (_IOC_TYPE(request) != 0xB4) {
		errno = ENOTTY;
		return -1;
	}
	if (request == GPIO_V2_GET_LINE_IOCTL)
		return request_lines(fd, arg);
	return call(conn, OP_IOCTL, request, arg, _IOC_SIZE(request), -1);
}

int close(int fd)
{
	int conn = conn_for(fd);
	REAL(close);

	if (conn >= 0) {
		pthread_mutex_lock(&table_lock);
		conn_of[fd] = 0;
		pthread_mutex_unlock(&table_lock);
		if (conn != fd)
			real_close(conn);
	}
	return real_close(fd);
}

static int fake_stat(int n, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_mode = S_IFCHR | 0660;
	st->st_rdev = makedev(SIM_MAJOR, (unsigned)n);
	return 0;
}

#define STAT_WRAPPER(name, type) \
int name(const char *path, type *st) \
{ \
	int n = chip_number(path); \
	REAL(name); \
	return n >= 0 ? fake_stat(n, (struct stat *)st) : real_##name(path, st); \
}
STAT_WRAPPER(stat, struct stat)
STAT_WRAPPER(lstat, struct stat)
STAT_WRAPPER(stat64, struct stat64)
STAT_WRAPPER(lstat64, struct stat64)

/* The old glibc entry points, which a manylinux wheel (built against glibc < 2.33) calls. */
#define XSTAT_WRAPPER(name, type) \
int name(int ver, const char *path, type *st) \
{ \
	int n = chip_number(path); \
	static int (*real)(int, const char *, type *); \
	if (!real) \
		real = (int (*)(int, const char *, type *))dlsym(RTLD_NEXT, #name); \
	if (n >= 0) \
		return fake_stat(n, (struct stat *)st); \
	if (!real) { \
		errno = ENOSYS; \
		return -1; \
	} \
	return real(ver, path, st); \
}
XSTAT_WRAPPER(__xstat, struct stat)
XSTAT_WRAPPER(__lxstat, struct stat)
XSTAT_WRAPPER(__xstat64, struct stat64)
XSTAT_WRAPPER(__lxstat64, struct stat64)

char *realpath(const char *path, char *resolved)
{
	unsigned major_, minor_;
	char tail[16];
	REAL(realpath);

	if (getenv("GPIOSIM_SOCKET") && path &&
	    sscanf(path, "/sys/dev/char/%u:%u/%15s", &major_, &minor_, tail) == 3 &&
	    major_ == SIM_MAJOR && strcmp(tail, "subsystem") == 0) {
		if (resolved)
			return strcpy(resolved, "/sys/bus/gpio");
		return strdup("/sys/bus/gpio");
	}
	return real_realpath(path, resolved);
}

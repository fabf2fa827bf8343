/* util.c — errors, allocation, timing, memory, atomic file writes. */
#define _GNU_SOURCE
#include "opd.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>
#include <dirent.h>

/* One message per thread: the library reports errors by setting it and
 * returning -1; the CLI prints it and exits non-zero. */
static __thread char err_buf[1024];

const char *opd_last_error(void) { return err_buf[0] ? err_buf : "no error"; }

int opd_set_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err_buf, sizeof err_buf, fmt, ap);
    va_end(ap);
    return -1;
}

void *opd_malloc(size_t nbytes) {
    /* 64-byte alignment: whole cache lines, and what AVX-512 loads prefer */
    void *p = NULL;
    if (nbytes == 0) nbytes = 64;
    if (posix_memalign(&p, 64, (nbytes + 63) & ~(size_t)63) != 0) {
        fprintf(stderr, "opd: out of memory allocating %zu bytes\n", nbytes);
        abort();
    }
    return p;
}

void *opd_calloc(size_t n, size_t size) {
    size_t nbytes = n * size;
    if (size != 0 && nbytes / size != n) {
        fprintf(stderr, "opd: allocation size overflow (%zu x %zu)\n", n, size);
        abort();
    }
    void *p = opd_malloc(nbytes);
    memset(p, 0, nbytes);
    return p;
}

double opd_time(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

long opd_peak_rss_kb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    long kb = -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "VmHWM:", 6) == 0) { kb = strtol(line + 6, NULL, 10); break; }
    }
    fclose(f);
    return kb;
}

/* ------------------------------------------------------------ file types */
static const char *file_kind(mode_t m) {
    if (S_ISDIR(m)) return "a directory";
    if (S_ISFIFO(m)) return "a FIFO (named pipe)";
    if (S_ISCHR(m)) return "a character device";
    if (S_ISBLK(m)) return "a block device";
    if (S_ISSOCK(m)) return "a socket";
    if (S_ISLNK(m)) return "a symbolic link";
    return "not a regular file";
}

FILE *opd_fopen_input(const char *path) {
    /* O_NONBLOCK: opening a FIFO for reading would otherwise wait for a
     * writer forever; fstat then says what it is, without a race */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) { opd_set_error("%s: cannot open: %s", path, strerror(errno)); return NULL; }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        opd_set_error("%s: cannot stat: %s", path, strerror(e));
        return NULL;
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        opd_set_error("%s: is %s, not a regular file", path, file_kind(sb.st_mode));
        return NULL;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    FILE *f = fdopen(fd, "rb");
    if (!f) { close(fd); opd_set_error("%s: cannot open: %s", path, strerror(errno)); }
    return f;
}

/* ----------------------------------------------------------- atomic writes */
/* An output is replaced only if it is a regular file or missing: renaming
 * over /dev/full or a FIFO would destroy the node, and renaming over a
 * symlink would silently turn it into a regular file. */
static int check_output(const char *path) {
    struct stat sb;
    if (lstat(path, &sb) != 0)
        return errno == ENOENT ? 0 : opd_set_error("%s: cannot stat: %s", path, strerror(errno));
    if (S_ISLNK(sb.st_mode))
        return opd_set_error("%s: is a symbolic link: refusing to replace it (give the path it points to)", path);
    if (!S_ISREG(sb.st_mode))
        return opd_set_error("%s: exists and is %s: refusing to replace it", path, file_kind(sb.st_mode));
    return 0;
}

/* A named temporary is "<path>.tmp.XXXXXX". */
static int temp_name(const char *path, char *tmp, size_t tmpsz) {
    int n = snprintf(tmp, tmpsz, "%s.tmp.XXXXXX", path);
    if (n < 0 || (size_t)n >= tmpsz) return opd_set_error("%s: path too long", path);
    return 0;
}

/* Removes "<path>.tmp.??????" files a killed writer of `path` left behind.
 * Two processes writing the same file at once is not supported anyway (the
 * last rename wins), so such a name belongs to no live writer. */
static void remove_stale_temps(const char *path) {
    char *copy = strdup(path), *copy2 = strdup(path);
    if (!copy || !copy2) { free(copy); free(copy2); return; }
    const char *dir = dirname(copy), *base = basename(copy2);
    size_t bl = strlen(base);
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            const char *nm = e->d_name;
            if (strncmp(nm, base, bl) != 0 || strncmp(nm + bl, ".tmp.", 5) != 0 || strlen(nm + bl + 5) != 6)
                continue;
            unlinkat(dirfd(d), nm, 0);
        }
        closedir(d);
    }
    free(copy);
    free(copy2);
}

/* The temporary file a write goes to before it replaces `path`. With
 * O_TMPFILE it has no name until it is complete, so a kill -9 mid-write
 * leaves nothing behind; elsewhere (filesystems without it) it is a named
 * mkstemp file beside `path`, which the next write of `path` removes. */
typedef struct {
    int fd;
    int anon;          /* O_TMPFILE: unnamed until linked */
    char tmp[4096];    /* the name (fallback, or once linked) */
} temp_file;

static int temp_open(const char *path, temp_file *t) {
    t->fd = -1;
    t->anon = 0;
    if (check_output(path) != 0) return -1;
    if (temp_name(path, t->tmp, sizeof t->tmp) != 0) return -1;
    remove_stale_temps(path);
#ifdef O_TMPFILE
    /* linking it needs /proc/self/fd (or CAP_DAC_READ_SEARCH): without
     * /proc, use the named fallback rather than fail at the end */
    char *copy = access("/proc/self/fd", X_OK) == 0 ? strdup(path) : NULL;
    if (copy) {
        /* 0666 less the umask, as for any new file of this user */
        t->fd = open(dirname(copy), O_TMPFILE | O_WRONLY | O_CLOEXEC, 0666);
        free(copy);
        if (t->fd >= 0) { t->anon = 1; return 0; }
    }
#endif
    t->fd = mkstemp(t->tmp);
    if (t->fd < 0) return opd_set_error("%s: cannot create temporary file: %s", path, strerror(errno));
    /* mkstemp makes the file 0600 */
    mode_t mask = umask(0);
    umask(mask);
    fchmod(t->fd, 0666 & ~mask);
    return 0;
}

static void temp_abort(temp_file *t) {
    if (t->fd >= 0) close(t->fd);
    t->fd = -1;
    if (!t->anon) unlink(t->tmp);
}

/* Make the rename itself durable. */
static void fsync_dir_of(const char *path) {
    char *copy = strdup(path);
    if (!copy) return;
    int dfd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) { fsync(dfd); close(dfd); }
    free(copy);
}

/* fsync, give an unnamed file a name, close, rename into place. */
static int temp_commit(const char *path, temp_file *t) {
    if (fsync(t->fd) != 0) {
        int e = errno;
        temp_abort(t);
        return opd_set_error("%s: fsync failed: %s", path, strerror(e));
    }
    if (t->anon) {
        /* linkat cannot replace a file, so link under a fresh temporary name
         * and rename that: the name exists only between these two calls */
        char proc[64];
        snprintf(proc, sizeof proc, "/proc/self/fd/%d", t->fd);
        int linked = 0;
        for (int tries = 0; tries < 100 && !linked; tries++) {
            char *x = t->tmp + strlen(t->tmp) - 6;
            static const char chars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            uint64_t r = ((uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32)) + (uint64_t)tries * 0x9E3779B97F4A7C15ull;
            for (int i = 0; i < 6; i++) { x[i] = chars[r % 62]; r /= 62; }
            if (linkat(AT_FDCWD, proc, AT_FDCWD, t->tmp, AT_SYMLINK_FOLLOW) == 0 ||
                linkat(t->fd, "", AT_FDCWD, t->tmp, AT_EMPTY_PATH) == 0)
                linked = 1;
            else if (errno != EEXIST)
                break;
        }
        if (!linked) {
            int e = errno;
            temp_abort(t);
            return opd_set_error("%s: cannot link the temporary file: %s", path, strerror(e));
        }
        t->anon = 0;
    }
    /* rename right after the link (the close can wait): the name lives as
     * briefly as it can */
    if (rename(t->tmp, path) != 0) {
        int e = errno;
        temp_abort(t);
        return opd_set_error("%s: cannot rename temporary file into place: %s", path, strerror(e));
    }
    int closed = close(t->fd);
    t->fd = -1;
    if (closed != 0) return opd_set_error("%s: close failed: %s", path, strerror(errno));
    fsync_dir_of(path);
    return 0;
}

/* Test hook: OPD_FAIL_WRITE_AFTER=N makes every atomic write fail with ENOSPC
 * once N bytes went to the file, as a full disk would. */
static long fail_write_after(void) {
    const char *s = getenv("OPD_FAIL_WRITE_AFTER");
    if (!s || !*s) return -1;
    char *end;
    long v = strtol(s, &end, 10);
    return *end == '\0' && v >= 0 ? v : -1;
}

int opd_atomic_write(const char *path, const void *const *parts,
                     const size_t *sizes, int n) {
    temp_file t;
    if (temp_open(path, &t) != 0) return -1;
    long limit = fail_write_after();
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        const char *p = parts[i];
        size_t left = sizes[i];
        while (left > 0) {
            size_t chunk = left;
            if (limit >= 0 && total + chunk > (size_t)limit) chunk = (size_t)limit - total;
            ssize_t w;
            if (chunk == 0) { errno = ENOSPC; w = -1; }
            else w = write(t.fd, p, chunk);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) {
                int e = w == 0 ? EIO : errno;
                temp_abort(&t);
                return opd_set_error("%s: write failed: %s", path, strerror(e));
            }
            p += w;
            left -= (size_t)w;
            total += (size_t)w;
        }
    }
    return temp_commit(path, &t);
}

/* A FILE* cookie that counts bytes, for the OPD_FAIL_WRITE_AFTER hook. */
/* It writes all of a buffer or fails (glibc takes a short count from a
 * cookie as an error without errno), and keeps the errno of the failure:
 * stdio does not reliably leave it in errno for the caller. */
typedef struct { int fd; long left; int err; } limited_fd;

static ssize_t limited_write(void *c, const char *buf, size_t n) {
    limited_fd *l = c;
    size_t done = 0;
    while (done < n) {
        size_t chunk = n - done;
        if (l->left >= 0 && (long)chunk > l->left) chunk = (size_t)l->left;
        ssize_t w;
        if (chunk == 0) { errno = ENOSPC; w = -1; }
        else w = write(l->fd, buf + done, chunk);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            if (!l->err) l->err = w == 0 ? EIO : errno;
            errno = l->err;
            return -1;
        }
        done += (size_t)w;
        if (l->left >= 0) l->left -= w;
    }
    return (ssize_t)n;
}

int opd_atomic_write_cb(const char *path, int (*write_fn)(void *user, void *fp),
                        void *user) {
    temp_file t;
    if (temp_open(path, &t) != 0) return -1;
    limited_fd lim = {t.fd, fail_write_after(), 0};
    cookie_io_functions_t io = {.write = limited_write};
    FILE *fp = fopencookie(&lim, "w", io);
    if (!fp) {
        temp_abort(&t);
        return opd_set_error("%s: cannot open the temporary file for writing", path);
    }
    errno = 0;
    int rc = write_fn(user, fp);
    int e = errno;
    /* the callback's stdio errors set no message of their own: name the cause */
    if (rc == 0 && fflush(fp) != 0) { rc = -1; e = errno; }
    if (rc == 0 && ferror(fp)) rc = -1;
    if (fclose(fp) != 0 && rc == 0) { rc = -1; e = errno; }
    if (lim.err) e = lim.err;
    if (rc != 0) {
        temp_abort(&t);
        return opd_set_error("%s: write failed: %s", path, e ? strerror(e) : "the writer reported an error");
    }
    return temp_commit(path, &t);
}

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

/* Open a temp file beside `path` (same directory, so rename is atomic). */
static int open_temp_beside(const char *path, char *tmp, size_t tmpsz) {
    int n = snprintf(tmp, tmpsz, "%s.tmp.XXXXXX", path);
    if (n < 0 || (size_t)n >= tmpsz) return opd_set_error("%s: path too long", path);
    int fd = mkstemp(tmp);
    if (fd < 0) return opd_set_error("%s: cannot create temporary file: %s", path, strerror(errno));
    /* mkstemp makes the file 0600; the result should get the permissions
     * any new file of this user gets (0666 less the umask) */
    mode_t mask = umask(0);
    umask(mask);
    fchmod(fd, 0666 & ~mask);
    return fd;
}

/* Make the rename itself durable. */
static void fsync_dir_of(const char *path) {
    char *copy = strdup(path);
    if (!copy) return;
    int dfd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) { fsync(dfd); close(dfd); }
    free(copy);
}

static int finish_temp(const char *path, const char *tmp) {
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return opd_set_error("%s: cannot rename temporary file into place: %s", path, strerror(e));
    }
    fsync_dir_of(path);
    return 0;
}

int opd_atomic_write(const char *path, const void *const *parts,
                     const size_t *sizes, int n) {
    char tmp[4096];
    int fd = open_temp_beside(path, tmp, sizeof tmp);
    if (fd < 0) return -1;
    for (int i = 0; i < n; i++) {
        const char *p = parts[i];
        size_t left = sizes[i];
        while (left > 0) {
            ssize_t w = write(fd, p, left);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) {
                int e = errno;
                close(fd);
                unlink(tmp);
                return opd_set_error("%s: write failed: %s", path, strerror(e));
            }
            p += w;
            left -= (size_t)w;
        }
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        int e = errno;
        unlink(tmp);
        return opd_set_error("%s: fsync/close failed: %s", path, strerror(e));
    }
    return finish_temp(path, tmp);
}

int opd_atomic_write_cb(const char *path, int (*write_fn)(void *user, void *fp),
                        void *user) {
    char tmp[4096];
    int fd = open_temp_beside(path, tmp, sizeof tmp);
    if (fd < 0) return -1;
    FILE *fp = fdopen(fd, "w");
    if (!fp) {
        close(fd);
        unlink(tmp);
        return opd_set_error("%s: fdopen failed", path);
    }
    int rc = write_fn(user, fp);
    if (rc == 0 && (fflush(fp) != 0 || fsync(fileno(fp)) != 0 || ferror(fp)))
        rc = opd_set_error("%s: write failed: %s", path, strerror(errno));
    if (fclose(fp) != 0 && rc == 0) rc = opd_set_error("%s: close failed", path);
    if (rc != 0) { unlink(tmp); return -1; }
    return finish_temp(path, tmp);
}

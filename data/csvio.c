/* csvio.c — CSV through libcsv: datasets (read with every row checked) and
 * metrics logs (rewritten atomically on flush).
 *
 * Line numbers: libcsv's callbacks do not say where a record is, so the file
 * is fed to csv_parse one physical line at a time, and a record starts on
 * the line being fed when the parser is between records (pstate 0,
 * ROW_NOT_BEGUN in libcsv.c; the struct is public in csv.h). A quoted field
 * may span lines; errors name the line where its record starts, quoting
 * errors the line of the offending character. */
#include "opd_data.h"

#include <csv.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Every CSV opd reads (datasets, logs) is read whole: cap it. */
#define OPD_CSV_MAX_BYTES (1 << 30)

static const char *const dataset_header[5] = {"id", "steps", "prompt", "solution", "answer"};

/* plain malloc: a CSV cell is a few bytes, opd_malloc would round it to 64 */
static char *str_dup_n(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (!d) { fprintf(stderr, "opd: out of memory\n"); abort(); }
    if (n) memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

/* ------------------------------------------------------------- reading */
typedef struct {
    const char *path;
    opd_csv_table *t;
    const char *const *expect_header;  /* NULL: any header */
    int nexpect;
    int cur_line;       /* physical line being fed */
    int rec_line;       /* line where the current record started */
    char **rec;         /* fields of the current record */
    int nrec, caprec;
    int cap_rows;
    int failed;         /* an error was set from a callback */
} csv_reader;

static void reader_fail_header(csv_reader *r) {
    /* join the fields for the message */
    char got[256];
    size_t len = 0;
    got[0] = '\0';
    for (int i = 0; i < r->nrec && len + 2 < sizeof got; i++)
        len += (size_t)snprintf(got + len, sizeof got - len, "%s%s", i ? "," : "", r->rec[i]);
    char want[256];
    size_t wl = 0;
    want[0] = '\0';
    for (int i = 0; i < r->nexpect; i++)
        wl += (size_t)snprintf(want + wl, sizeof want - wl, "%s%s", i ? "," : "", r->expect_header[i]);
    /* a first row starting with a number is data: the header is missing */
    char *end = NULL;
    if (r->nrec > 0 && r->rec[0][0] != '\0') {
        strtol(r->rec[0], &end, 10);
        if (*end == '\0') {
            opd_set_error("%s:%d: missing header row (expected \"%s\", found data \"%.100s\")",
                          r->path, r->rec_line, want, got);
            return;
        }
    }
    opd_set_error("%s:%d: wrong header \"%.100s\", expected \"%s\"", r->path, r->rec_line, got, want);
}

static void on_field(void *s, size_t len, void *user) {
    csv_reader *r = user;
    if (r->failed) return;
    if (r->nrec == r->caprec) {
        r->caprec = r->caprec ? 2 * r->caprec : 8;
        r->rec = realloc(r->rec, (size_t)r->caprec * sizeof *r->rec);
        if (!r->rec) { fprintf(stderr, "opd: out of memory\n"); abort(); }
    }
    r->rec[r->nrec++] = str_dup_n(s ? (const char *)s : "", s ? len : 0);
}

static void drop_record(csv_reader *r) {
    for (int i = 0; i < r->nrec; i++) free(r->rec[i]);
    r->nrec = 0;
}

static void on_record(int c, void *user) {
    csv_reader *r = user;
    opd_csv_table *t = r->t;
    if (r->failed) { drop_record(r); return; }
    if (t->nrows == 0) {
        if (r->expect_header) {
            int ok = r->nrec == r->nexpect;
            for (int i = 0; ok && i < r->nexpect; i++) ok = strcmp(r->rec[i], r->expect_header[i]) == 0;
            if (!ok) { reader_fail_header(r); r->failed = 1; drop_record(r); return; }
        }
        t->ncols = r->nrec;
    } else if (r->nrec != t->ncols) {
        opd_set_error("%s:%d: %d column%s, the header has %d", r->path, r->rec_line, r->nrec,
                      r->nrec == 1 ? "" : "s", t->ncols);
        r->failed = 1;
        drop_record(r);
        return;
    }
    if (t->nrows == r->cap_rows) {
        r->cap_rows = r->cap_rows ? 2 * r->cap_rows : 64;
        t->cell = realloc(t->cell, (size_t)r->cap_rows * (size_t)t->ncols * sizeof *t->cell);
        t->line = realloc(t->line, (size_t)r->cap_rows * sizeof *t->line);
        if (!t->cell || !t->line) { fprintf(stderr, "opd: out of memory\n"); abort(); }
    }
    memcpy(t->cell + (size_t)t->nrows * (size_t)t->ncols, r->rec, (size_t)t->ncols * sizeof *r->rec);
    t->line[t->nrows] = r->rec_line;
    t->nrows++;
    r->nrec = 0;  /* the strings now belong to the table */
}

static int read_file(const char *path, char **data, size_t *size) {
    FILE *f = opd_fopen_input(path);
    if (!f) return -1;
    struct stat sb;
    if (fstat(fileno(f), &sb) == 0 && sb.st_size > OPD_CSV_MAX_BYTES) {
        fclose(f);
        return opd_set_error("%s: %lld bytes, larger than the %d MiB a CSV here may be", path,
                             (long long)sb.st_size, OPD_CSV_MAX_BYTES >> 20);
    }
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    if (!buf) { fclose(f); return opd_set_error("%s: out of memory", path); }
    for (;;) {
        if (len == cap) {
            cap *= 2;
            char *nb = realloc(buf, cap);
            if (!nb) { free(buf); fclose(f); return opd_set_error("%s: out of memory", path); }
            buf = nb;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0) break;
        if (len > OPD_CSV_MAX_BYTES) {
            free(buf);
            fclose(f);
            return opd_set_error("%s: larger than %d MiB, the most a CSV here may be", path,
                                 OPD_CSV_MAX_BYTES >> 20);
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) { free(buf); return opd_set_error("%s: read error", path); }
    *data = buf;
    *size = len;
    return 0;
}

static int csv_read_impl(const char *path, opd_csv_table *t,
                         const char *const *expect_header, int nexpect) {
    memset(t, 0, sizeof *t);
    char *data = NULL;
    size_t size = 0;
    if (read_file(path, &data, &size) != 0) return -1;

    struct csv_parser p;
    if (csv_init(&p, CSV_STRICT | CSV_STRICT_FINI | CSV_APPEND_NULL) != 0) {
        free(data);
        return opd_set_error("%s: csv_init failed", path);
    }
    csv_reader r = {.path = path, .t = t, .expect_header = expect_header, .nexpect = nexpect,
                    .cur_line = 0, .rec_line = 1};
    int rc = 0;
    size_t pos = 0;
    while (pos < size && !r.failed) {
        const char *nl = memchr(data + pos, '\n', size - pos);
        size_t chunk = nl ? (size_t)(nl - (data + pos)) + 1 : size - pos;
        r.cur_line++;
        if (p.pstate == 0) r.rec_line = r.cur_line;  /* between records */
        size_t done = csv_parse(&p, data + pos, chunk, on_field, on_record, &r);
        if (r.failed) { rc = -1; break; }
        if (done != chunk) {
            int e = csv_error(&p);
            if (e == CSV_EPARSE)
                rc = opd_set_error("%s:%d: CSV quoting error (%s): a quote inside an unquoted "
                                   "field or text after a closing quote, column %zu",
                                   path, r.cur_line, csv_strerror(e), done + 1);
            else
                rc = opd_set_error("%s:%d: CSV error: %s", path, r.cur_line, csv_strerror(e));
            break;
        }
        pos += chunk;
    }
    if (rc == 0 && !r.failed && csv_fini(&p, on_field, on_record, &r) != 0)
        rc = opd_set_error("%s:%d: unterminated quoted field (%s)", path, r.rec_line,
                           csv_strerror(csv_error(&p)));
    if (rc == 0 && r.failed) rc = -1;
    if (rc == 0 && t->nrows == 0) rc = opd_set_error("%s:1: empty file, expected a header row", path);
    drop_record(&r);
    free(r.rec);
    csv_free(&p);
    free(data);
    if (rc != 0) opd_csv_table_free(t);
    return rc;
}

int opd_csv_read(const char *path, opd_csv_table *t) {
    return csv_read_impl(path, t, NULL, 0);
}

void opd_csv_table_free(opd_csv_table *t) {
    if (t->cell)
        for (size_t i = 0; i < (size_t)t->nrows * (size_t)t->ncols; i++) free(t->cell[i]);
    free(t->cell);
    free(t->line);
    memset(t, 0, sizeof *t);
}

/* ------------------------------------------------------------- datasets */
static int parse_int(const char *s, long lo, long hi, long *out) {
    if (*s == '\0') return -1;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

int opd_dataset_read_csv(const char *path, opd_task **out, int *n) {
    *out = NULL;
    *n = 0;
    opd_csv_table t;
    if (csv_read_impl(path, &t, dataset_header, 5) != 0) return -1;
    int nt = t.nrows - 1;
    opd_task *tasks = opd_calloc((size_t)(nt > 0 ? nt : 1), sizeof *tasks);
    int rc = 0;
    for (int row = 1; row <= nt && rc == 0; row++) {
        char **c = t.cell + (size_t)row * 5;
        int line = t.line[row];
        opd_task *task = &tasks[row - 1];
        long v[5];
        for (int col = 0; col < 5 && rc == 0; col++) {
            if (col == 2 || col == 3) continue;
            long lo = col == 1 ? 1 : 0;
            long hi = col == 1 ? OPD_TASK_MAX_STEPS : col == 4 ? OPD_TASK_MODULUS - 1 : INT_MAX;
            if (parse_int(c[col], lo, hi, &v[col]) != 0)
                rc = opd_set_error("%s:%d: column '%s': \"%.40s\" is not an integer in [%ld, %ld]",
                                   path, line, dataset_header[col], c[col], lo, hi);
        }
        if (rc) break;
        if (strlen(c[2]) >= sizeof task->prompt) {
            rc = opd_set_error("%s:%d: prompt of %zu characters is too long (at most %zu)", path,
                               line, strlen(c[2]), sizeof task->prompt - 1);
            break;
        }
        if (strlen(c[3]) >= sizeof task->solution) {
            rc = opd_set_error("%s:%d: solution of %zu characters is too long (at most %zu)", path,
                               line, strlen(c[3]), sizeof task->solution - 1);
            break;
        }
        task->id = (int)v[0];
        task->steps = (int)v[1];
        task->answer = (int)v[4];
        strcpy(task->prompt, c[2]);
        strcpy(task->solution, c[3]);

        char ref[OPD_TASK_SOLUTION_MAX];
        int steps = 0;
        int truth = opd_task_solve(task->prompt, ref, sizeof ref, &steps);
        if (truth < 0) {
            char why[512];  /* copy: opd_set_error writes into the same buffer */
            snprintf(why, sizeof why, "%s", opd_last_error());
            rc = opd_set_error("%s:%d: %s", path, line, why);
            break;
        }
        if (steps != task->steps) {
            rc = opd_set_error("%s:%d: steps is %d but the prompt has %d steps", path, line,
                               task->steps, steps);
            break;
        }
        if (task->answer != truth) {
            rc = opd_set_error("%s:%d: answer %d does not verify: the prompt's answer is %d",
                               path, line, task->answer, truth);
            break;
        }
        if (opd_task_verify(task->prompt, task->solution) != 1) {
            rc = opd_set_error("%s:%d: the solution's final answer does not verify (expected "
                               "\"...>%d\" at its end)", path, line, truth);
            break;
        }
        int at = opd_task_first_error(task->prompt, task->solution);
        if (at >= 0) {
            rc = opd_set_error("%s:%d: the solution differs from the reference solution at "
                               "character %d", path, line, at);
            break;
        }
    }
    opd_csv_table_free(&t);
    if (rc != 0) { free(tasks); return -1; }
    *out = tasks;
    *n = nt;
    return 0;
}

/* Fields are quoted only when they must be, so a dataset stays readable:
 * separators, quotes, line breaks, spaces that libcsv would trim, and the
 * empty string (an empty one-column row would read as a blank line). */
static int needs_quotes(const char *s, size_t len) {
    if (len == 0) return 1;
    if (s[0] == ' ' || s[0] == '\t' || s[len - 1] == ' ' || s[len - 1] == '\t') return 1;
    return strpbrk(s, ",\"\r\n") != NULL;
}

static int write_field(FILE *fp, const char *s) {
    size_t len = strlen(s);
    if (needs_quotes(s, len)) return csv_fwrite(fp, s, len) == 0 ? 0 : -1;
    return fwrite(s, 1, len, fp) == len ? 0 : -1;
}

typedef struct { const opd_task *tasks; int n; } dataset_writer;

static int write_dataset(void *user, void *fpv) {
    const dataset_writer *w = user;
    FILE *fp = fpv;
    for (int i = 0; i < 5; i++)
        if (fprintf(fp, "%s%s", i ? "," : "", dataset_header[i]) < 0) return -1;
    if (fputc('\n', fp) == EOF) return -1;
    for (int i = 0; i < w->n; i++) {
        const opd_task *t = &w->tasks[i];
        if (fprintf(fp, "%d,%d,", t->id, t->steps) < 0) return -1;
        if (write_field(fp, t->prompt) != 0 || fputc(',', fp) == EOF) return -1;
        if (write_field(fp, t->solution) != 0) return -1;
        if (fprintf(fp, ",%d\n", t->answer) < 0) return -1;
    }
    return 0;
}

int opd_dataset_write_csv(const char *path, const opd_task *tasks, int n) {
    dataset_writer w = {tasks, n};
    return opd_atomic_write_cb(path, write_dataset, &w);
}

/* ----------------------------------------------------------- metrics log */
static void log_append(opd_csv_log *w, const char *s, size_t n) {
    if (w->len + n + 1 > w->cap) {
        size_t cap = w->cap ? w->cap : 4096;
        while (w->len + n + 1 > cap) cap *= 2;
        w->buf = realloc(w->buf, cap);
        if (!w->buf) { fprintf(stderr, "opd: out of memory\n"); abort(); }
        w->cap = cap;
    }
    memcpy(w->buf + w->len, s, n);
    w->len += n;
    w->buf[w->len] = '\0';
}

/* Appends one cell, quoted (quotes doubled by libcsv's csv_write) if needed. */
static void log_cell(opd_csv_log *w, const char *s) {
    if (w->col > 0) log_append(w, ",", 1);
    size_t len = strlen(s);
    if (!needs_quotes(s, len)) {
        log_append(w, s, len);
    } else {
        size_t qlen = csv_write(NULL, 0, s, len);
        char *q = opd_malloc(qlen);
        csv_write(q, qlen, s, len);
        log_append(w, q, qlen);
        free(q);
    }
    w->col++;
}

int opd_csv_log_init(opd_csv_log *w, const char *path,
                     const char *const *header, int ncols) {
    memset(w, 0, sizeof *w);
    if (ncols < 1) return opd_set_error("%s: a CSV log needs at least one column", path);
    w->path = str_dup_n(path, strlen(path));
    w->ncols = ncols;
    for (int i = 0; i < ncols; i++) log_cell(w, header[i]);
    log_append(w, "\n", 1);
    w->col = 0;
    w->row_start = w->len;
    return 0;
}

int opd_csv_log_open(opd_csv_log *w, const char *path,
                     const char *const *header, int ncols) {
    if (opd_csv_log_init(w, path, header, ncols) != 0) return -1;
    /* write the header now, so a bad path fails at open, not at the end of a run */
    if (opd_csv_log_flush(w) != 0) { opd_csv_log_discard(w); return -1; }
    return 0;
}

static int log_check_room(opd_csv_log *w) {
    if (w->col >= w->ncols)
        return opd_set_error("%s: row %d has more than %d cells", w->path, w->nrows + 1, w->ncols);
    return 0;
}

int opd_csv_log_str(opd_csv_log *w, const char *s) {
    if (log_check_room(w) != 0) return -1;
    log_cell(w, s);
    return 0;
}

int opd_csv_log_int(opd_csv_log *w, long v) {
    char s[32];
    snprintf(s, sizeof s, "%ld", v);
    return opd_csv_log_str(w, s);
}

int opd_csv_log_num(opd_csv_log *w, double v) {
    char s[64];
    snprintf(s, sizeof s, "%.9g", v);  /* round-trips a float exactly */
    return opd_csv_log_str(w, s);
}

int opd_csv_log_end_row(opd_csv_log *w) {
    if (w->col != w->ncols) {
        int got = w->col;
        /* drop the partial row so the log stays a valid table */
        w->len = w->row_start;
        w->buf[w->len] = '\0';
        w->col = 0;
        return opd_set_error("%s: row %d has %d cells, the header has %d", w->path,
                             w->nrows + 1, got, w->ncols);
    }
    log_append(w, "\n", 1);
    w->col = 0;
    w->row_start = w->len;
    w->nrows++;
    return 0;
}

int opd_csv_log_flush(opd_csv_log *w) {
    const void *parts[1] = {w->buf};
    size_t sizes[1] = {w->row_start};  /* complete rows only */
    return opd_atomic_write(w->path, parts, sizes, 1);
}

int opd_csv_log_close(opd_csv_log *w) {
    int rc = opd_csv_log_flush(w);
    opd_csv_log_discard(w);
    return rc;
}

void opd_csv_log_discard(opd_csv_log *w) {
    free(w->path);
    free(w->buf);
    memset(w, 0, sizeof *w);
}

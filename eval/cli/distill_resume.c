/* distill_resume.c — `opd distill --resume`: the checkpoint's metadata and
 * the old rows of log.csv and eval.csv (distill.h). */
#include "distill.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A step number from a file (a log cell, checkpoint metadata): a plain
 * decimal integer in [lo, hi], nothing else ("", "-5", "9e99" and LONG_MAX
 * are all errors, not 0 or an overflow). */
static int parse_step(const char *s, long lo, long hi, long *out) {
    if (!s || !*s || *s == '+' || *s == ' ') return -1;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

/* On --resume, keep the rows of an existing log up to the resumed step: read
 * them before the log is rewritten. The log must have the columns this
 * version writes (another shape would lose its rows without a word). */
static int read_old_log(const char *path, const char *const *header, int ncols, opd_csv_table *t) {
    memset(t, 0, sizeof *t);
    if (access(path, F_OK) != 0) return 0;
    if (opd_csv_read(path, t) != 0) return -1;
    int same = t->ncols == ncols;
    for (int c = 0; same && c < ncols; c++) same = strcmp(t->cell[c], header[c]) == 0;
    if (!same) {
        char got[160];
        size_t k = 0;
        got[0] = '\0';
        for (int c = 0; c < t->ncols && k + 1 < sizeof got; c++)
            k += (size_t)snprintf(got + k, sizeof got - k, "%s%s", c ? "," : "", t->cell[c]);
        int nc = t->ncols;
        opd_csv_table_free(t);
        return opd_set_error("%s: %d columns \"%.80s\" are not the %d this opd logs (starting \"%s,%s\"): "
                             "its rows would be lost; move it away to resume", path, nc, got, ncols,
                             header[0], header[1]);
    }
    return 0;
}

/* Re-adds the old rows whose step is <= upto (rows beyond the checkpoint
 * are dropped: the resumed run writes them again). With `need` > 0 the rows
 * kept must be exactly steps 0 .. need-1, in order: a log behind its
 * checkpoint would otherwise resume with a hole. */
static int append_old_rows(opd_csv_log *log, opd_csv_table *t, long upto, long need, const char *path) {
    long next = 0;
    int rc = 0;
    for (int r = 1; r < t->nrows && rc == 0; r++) {
        long step;
        if (parse_step(t->cell[r * t->ncols], 0, 1L << 30, &step) != 0) {
            rc = opd_set_error("%s:%d: step \"%.40s\" is not an integer in [0, 2^30]", path, t->line[r],
                               t->cell[r * t->ncols]);
            break;
        }
        if (step > upto) continue;
        if (need > 0 && step != next)
            rc = opd_set_error("%s:%d: step %ld where step %ld was expected (a log out of order or with a hole)",
                               path, t->line[r], step, next);
        next = step + 1;
        for (int c = 0; c < t->ncols && c < log->ncols; c++) opd_csv_log_str(log, t->cell[r * t->ncols + c]);
        opd_csv_log_end_row(log);
    }
    if (rc == 0 && need > 0 && next != need)
        rc = opd_set_error("%s: holds steps up to %ld but the checkpoint is at step %ld: the log is behind "
                           "its checkpoint", path, next - 1, need - 1);
    if (t->cell) opd_csv_table_free(t);
    return rc;
}

/* --resume of a distill run's log.csv and eval.csv.
 * The logs are flushed before each checkpoint is renamed into place, so
 * after any kill they hold at least the checkpoint's rows, maybe more: keep
 * rows up to the checkpoint (step rows of steps < k0; eval rows are labelled
 * by steps done, <= k0) and write them back before anything else, so the
 * files are never shorter than they were. On success both logs are open;
 * on failure neither is, and the files are as they were. */
int distill_resume_logs(opd_csv_log *slog, const char *slog_path, const char *const *shdr, int scols,
                        opd_csv_log *elog, const char *elog_path, const char *const *ehdr, int ecols,
                        long k0) {
    opd_csv_table old_s, old_e;
    memset(&old_s, 0, sizeof old_s);
    memset(&old_e, 0, sizeof old_e);
    if (read_old_log(slog_path, shdr, scols, &old_s) != 0) return -1;
    if (read_old_log(elog_path, ehdr, ecols, &old_e) != 0) {
        if (old_s.cell) opd_csv_table_free(&old_s);
        return -1;
    }
    if (!old_s.cell || !old_e.cell) {
        /* both are written from the first step on: one missing was removed */
        opd_set_error("%s: missing: resuming at step %ld needs the log of the steps before it",
                      old_s.cell ? elog_path : slog_path, k0);
        if (old_s.cell) opd_csv_table_free(&old_s);
        if (old_e.cell) opd_csv_table_free(&old_e);
        return -1;
    }
    opd_csv_log_init(slog, slog_path, shdr, scols);
    opd_csv_log_init(elog, elog_path, ehdr, ecols);
    int rc = append_old_rows(slog, &old_s, k0 - 1, k0, slog_path);
    if (rc == 0) rc = append_old_rows(elog, &old_e, k0, 0, elog_path);
    else if (old_e.cell) opd_csv_table_free(&old_e);
    if (rc == 0) rc = opd_csv_log_flush(slog);
    if (rc == 0) rc = opd_csv_log_flush(elog);
    if (rc != 0) {   /* leave the files as they were */
        opd_csv_log_discard(slog);
        opd_csv_log_discard(elog);
    }
    return rc;
}

int distill_resume_log(opd_csv_log *log, const char *path, const char *const *hdr, int cols, long upto) {
    opd_csv_table old;
    if (read_old_log(path, hdr, cols, &old) != 0) return -1;
    if (!old.cell) {
        /* a diagnostic, not the run's state: a run from before these files,
         * or one whose file was moved away, goes on with a new one */
        printf("%s: missing: a new one from step %ld on\n", path, upto + 1);
        return opd_csv_log_open(log, path, hdr, cols);
    }
    opd_csv_log_init(log, path, hdr, cols);
    int rc = append_old_rows(log, &old, upto, 0, path);
    if (rc == 0) rc = opd_csv_log_flush(log);
    if (rc != 0) opd_csv_log_discard(log);
    return rc;
}

int distill_meta_long(const char *path, const char *key, long lo, long hi, long *out) {
    char *v = opd_checkpoint_meta(path, key);
    if (!v) return opd_set_error("%s: no '%s' in the checkpoint's metadata (not a distill checkpoint?)", path, key);
    int bad = parse_step(v, lo, hi, out) != 0;
    if (bad) opd_set_error("%s: metadata '%s' = \"%.40s\" is not an integer in [%ld, %ld]", path, key, v, lo, hi);
    free(v);
    return bad ? -1 : 0;
}

int distill_meta_seconds(const char *path, const char *key, double *out) {
    char *v = opd_checkpoint_meta(path, key);
    if (!v) return opd_set_error("%s: no '%s' in the checkpoint's metadata (not a distill checkpoint?)", path, key);
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    int bad = !*v || *end != '\0' || errno != 0 || !isfinite(x) || x < 0;
    if (bad) opd_set_error("%s: metadata '%s' = \"%.40s\" is not a finite number >= 0", path, key, v);
    free(v);
    *out = bad ? 0 : x;
    return bad ? -1 : 0;
}


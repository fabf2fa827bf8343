/* cmd_summarize.c — `opd summarize`: one experiment's runs over seeds, as a
 * table with intervals (issue 18). The statistics are eval/experiment/stats.c
 * (see stats.h for the bootstrap); this file reads the runs and lays out
 * the numbers.
 *
 * Input: DIR/METHOD/seedS/ for every method and seed, each the --out of one
 * `opd distill` or `opd rl` run: eval.csv (step, train_seconds,
 * tokens_generated, acc, ...) and log.csv (a peak_rss_kb column).
 *
 * Per run: final pass@1 (the last evaluation), training seconds and tokens
 * generated (at the last evaluation), peak RSS (the largest peak_rss_kb of
 * log.csv), and the seconds and tokens to the target accuracy (the first
 * evaluation at or above it, placed by linear interpolation between
 * evaluations; stats.h, opd_time_to_target).
 *
 * Per method: the mean over seeds with its 95% percentile-bootstrap interval,
 * and against the baseline method on the same seeds:
 *   - the paired difference of final pass@1 (method - baseline);
 *   - the paired ratio of cost (baseline / method) for seconds and tokens to
 *     the target, and method / baseline for total seconds, tokens and peak
 *     memory: the bootstrap of the mean of log ratios, reported as exp of
 *     the mean and of the interval's ends (a geometric mean, so a 2x
 *     speedup and a 2x slowdown weigh the same).
 * A run that never reaches the target has no time to it: the method's
 * "reached" column counts the runs that did; its time is the mean over
 * those alone, and the speedup is over the seeds where both the method and
 * the baseline reached it (the count is printed beside it).
 *
 * Outputs, written atomically: PREFIX.csv (every number), PREFIX.md (the
 * table for the README) and PREFIX_curves.csv (per method and evaluation:
 * the mean seconds and tokens, and pass@1's mean and interval over seeds;
 * the bands of the accuracy-against-time plot).
 *
 * `opd summarize --evals F1,F2,...` instead reads `opd eval --out` tables
 * (metric,steps,value) and prints the mean pass@1 over them with its
 * interval: the teachers' own seed variation, reported beside the table. */
#include "cli.h"
#include "opd_data.h"
#include "experiment/stats.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_METHODS 32
#define MAX_SEEDS 64
#define MAX_EVALS 256

/* one run's numbers */
typedef struct {
    int nevals;
    double step[MAX_EVALS], sec[MAX_EVALS], tok[MAX_EVALS], acc[MAX_EVALS];
    double final_acc, train_s, tokens, peak_mib;
    double sec_to_target, tok_to_target;   /* NaN: not reached */
} run_numbers;

typedef struct {
    const char *cmd;
    const char *dir, *baseline, *prefix;
    char *evals[MAX_SEEDS];
    int nevals;
    char *methods[MAX_METHODS];
    int nmethods;
    int seeds[MAX_SEEDS];
    int nseeds;
    double target;           /* NaN: target_frac of the baseline's mean final pass@1 */
    double target_frac;
    int eval_n;              /* problems per evaluation (for the standard error) */
    int resamples;
} summarize_args;

static int column(const opd_csv_table *t, const char *path, const char *name) {
    for (int j = 0; j < t->ncols; j++)
        if (!strcmp(t->cell[j], name)) return j;
    fprintf(stderr, "opd summarize: %s: no column '%s'\n", path, name);
    return -1;
}

static int cell_number(const opd_csv_table *t, const char *path, int row, int col, double *out) {
    const char *s = t->cell[row * t->ncols + col];
    char *end;
    *out = strtod(s, &end);
    if (end == s || *end || !isfinite(*out)) {
        fprintf(stderr, "opd summarize: %s:%d: '%s' is not a finite number\n", path, t->line[row], s);
        return -1;
    }
    return 0;
}

static int read_run(const char *dir, run_numbers *r) {
    opd_csv_table t;
    char *path = cli_path_join(dir, "eval.csv");
    int rc = -1;
    if (opd_csv_read(path, &t) != 0) { cli_fail("summarize"); free(path); return -1; }
    int cs, ct, ck, ca;   /* the first missing column is the one reported */
    if ((cs = column(&t, path, "step")) < 0 || (ct = column(&t, path, "train_seconds")) < 0 ||
        (ck = column(&t, path, "tokens_generated")) < 0 || (ca = column(&t, path, "acc")) < 0)
        goto done;
    r->nevals = t.nrows - 1;
    if (r->nevals < 1 || r->nevals > MAX_EVALS) {
        fprintf(stderr, "opd summarize: %s: %d evaluations (1 .. %d expected)\n", path, r->nevals, MAX_EVALS);
        goto done;
    }
    for (int i = 0; i < r->nevals; i++)
        if (cell_number(&t, path, i + 1, cs, &r->step[i]) || cell_number(&t, path, i + 1, ct, &r->sec[i]) ||
            cell_number(&t, path, i + 1, ck, &r->tok[i]) || cell_number(&t, path, i + 1, ca, &r->acc[i]))
            goto done;
    r->final_acc = r->acc[r->nevals - 1];
    r->train_s = r->sec[r->nevals - 1];
    r->tokens = r->tok[r->nevals - 1];
    opd_csv_table_free(&t);
    free(path);

    path = cli_path_join(dir, "log.csv");
    if (opd_csv_read(path, &t) != 0) { cli_fail("summarize"); free(path); return -1; }
    int cp = column(&t, path, "peak_rss_kb");
    if (cp < 0) goto done;
    double peak = 0;
    for (int i = 1; i < t.nrows; i++) {
        double v;
        if (cell_number(&t, path, i, cp, &v)) goto done;
        if (v > peak) peak = v;
    }
    r->peak_mib = peak / 1024.0;
    rc = 0;
done:
    opd_csv_table_free(&t);
    free(path);
    return rc;
}

/* "0.812 [0.790, 0.834]" */
static void fmt_interval(char *buf, size_t n, const opd_interval *iv, const char *f) {
    char a[24], b[24], c[24];
    snprintf(a, sizeof a, f, iv->mean);
    snprintf(b, sizeof b, f, iv->lo);
    snprintf(c, sizeof c, f, iv->hi);
    if (snprintf(buf, n, "%s [%s, %s]", a, b, c) >= (int)n) buf[0] = 0;
}

/* mean and interval of the finite x[i]; n_used receives how many there were */
static opd_interval interval_of_finite(const double *x, int n, int R, uint64_t seed, int *n_used) {
    double v[MAX_SEEDS];
    int m = 0;
    for (int i = 0; i < n; i++)
        if (isfinite(x[i])) v[m++] = x[i];
    opd_interval iv = {NAN, NAN, NAN, 0, R};
    if (m > 0) opd_bootstrap_mean(v, m, R, seed, &iv);
    *n_used = m;
    return iv;
}

/* geometric-mean ratio num / den over the seeds where both are finite and > 0 */
static opd_interval ratio_of(const double *num, const double *den, int n, int R, uint64_t seed,
                             int *n_used) {
    double d[MAX_SEEDS];
    int m = 0;
    for (int i = 0; i < n; i++)
        if (isfinite(num[i]) && isfinite(den[i]) && num[i] > 0 && den[i] > 0)
            d[m++] = log(num[i]) - log(den[i]);
    opd_interval iv = {NAN, NAN, NAN, 0, R};
    if (m > 0) {
        opd_bootstrap_mean(d, m, R, seed, &iv);
        iv.mean = exp(iv.mean); iv.lo = exp(iv.lo); iv.hi = exp(iv.hi);
    }
    *n_used = m;
    return iv;
}

static int parse_list(const char *cmd, const char *opt, char *s, char **out, int max, int *n) {
    *n = 0;
    for (char *tok = strtok(s, ","); tok; tok = strtok(NULL, ",")) {
        if (*n == max) { fprintf(stderr, "opd %s: --%s: more than %d entries\n", cmd, opt, max); return -1; }
        out[(*n)++] = tok;
    }
    if (*n == 0) { fprintf(stderr, "opd %s: --%s: empty list\n", cmd, opt); return -1; }
    return 0;
}

/* --seeds N (1..N) or a list "3,5,8" */
static int parse_seeds(summarize_args *a, char *s) {
    char *items[MAX_SEEDS];
    int n;
    if (!strchr(s, ',')) {
        int N;
        if (cli_int("summarize", "seeds", s, 1, MAX_SEEDS, &N)) return -1;
        for (int i = 0; i < N; i++) a->seeds[i] = i + 1;
        a->nseeds = N;
        return 0;
    }
    if (parse_list("summarize", "seeds", s, items, MAX_SEEDS, &n)) return -1;
    for (int i = 0; i < n; i++)
        if (cli_int("summarize", "seeds", items[i], 0, 1000000, &a->seeds[i])) return -1;
    a->nseeds = n;
    return 0;
}

static FILE *open_tmp(const char *path, char *tmp, size_t n) {
    snprintf(tmp, n, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) fprintf(stderr, "opd summarize: cannot write %s\n", tmp);
    return f;
}

static int close_rename(FILE *f, const char *tmp, const char *path) {
    int bad = ferror(f);
    if (fclose(f) != 0 || bad || rename(tmp, path) != 0) {
        fprintf(stderr, "opd summarize: cannot write %s\n", path);
        remove(tmp);
        return -1;
    }
    return 0;
}

enum { OPT_RUNS = 256, OPT_METHODS, OPT_SEEDS, OPT_BASELINE, OPT_TARGET, OPT_TARGET_FRAC,
       OPT_EVAL_N, OPT_RESAMPLES, OPT_EVALS };

static void help(void) {
    printf("Usage: opd summarize --runs DIR --methods M1,M2,... --seeds N|S1,S2,... --out PREFIX [OPTIONS]\n"
           "The runs DIR/METHOD/seedS/ (each the --out of opd distill or opd rl) over seeds:\n"
           "per method the mean and 95%% percentile-bootstrap interval over seeds of final\n"
           "pass@1, seconds and tokens to the target, total seconds, tokens and peak memory;\n"
           "against the baseline on the same seeds, the paired difference of pass@1 and the\n"
           "paired (geometric-mean) cost ratios. Writes PREFIX.csv, PREFIX.md, PREFIX_curves.csv.\n\n"
           "      --runs DIR          the experiment's directory\n"
           "      --methods LIST      method directories, comma-separated (the table's rows)\n"
           "      --seeds N|LIST      seeds 1..N, or a list\n"
           "      --baseline M        the method the others are paired with (default: the first)\n"
           "      --target X          the target pass@1 (default: --target-frac of the baseline's\n"
           "                          mean final pass@1)\n"
           "      --target-frac F     (default 0.9)\n"
           "      --eval-n N          problems per evaluation, for pass@1's standard error\n"
           "      --resamples R       bootstrap resamples (default %d)\n"
           "  -o, --out PREFIX        output files' prefix\n"
           "Or: opd summarize --evals F1,F2,...   mean pass@1 of opd eval --out tables, with its interval\n",
           OPD_BOOTSTRAP_RESAMPLES_DEFAULT);
}

static int parse(summarize_args *a, int argc, char **argv) {
    static const struct option opts[] = {
        {"runs", required_argument, 0, OPT_RUNS}, {"methods", required_argument, 0, OPT_METHODS},
        {"seeds", required_argument, 0, OPT_SEEDS}, {"baseline", required_argument, 0, OPT_BASELINE},
        {"target", required_argument, 0, OPT_TARGET}, {"target-frac", required_argument, 0, OPT_TARGET_FRAC},
        {"eval-n", required_argument, 0, OPT_EVAL_N}, {"resamples", required_argument, 0, OPT_RESAMPLES},
        {"evals", required_argument, 0, OPT_EVALS},
        {"out", required_argument, 0, 'o'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    memset(a, 0, sizeof *a);
    a->cmd = "summarize";
    a->target = NAN;
    a->target_frac = 0.9;
    a->resamples = OPD_BOOTSTRAP_RESAMPLES_DEFAULT;
    float f;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
        switch (c) {
        case OPT_RUNS: a->dir = optarg; break;
        case OPT_METHODS:
            if (parse_list("summarize", "methods", optarg, a->methods, MAX_METHODS, &a->nmethods)) return 2;
            break;
        case OPT_SEEDS: if (parse_seeds(a, optarg)) return 2; break;
        case OPT_BASELINE: a->baseline = optarg; break;
        case OPT_TARGET: if (cli_float("summarize", "target", optarg, 0, 1, &f)) return 2; a->target = f; break;
        case OPT_TARGET_FRAC:
            if (cli_float("summarize", "target-frac", optarg, 0, 1, &f)) return 2;
            a->target_frac = f;
            break;
        case OPT_EVAL_N: if (cli_int("summarize", "eval-n", optarg, 1, 100000000, &a->eval_n)) return 2; break;
        case OPT_RESAMPLES:
            if (cli_int("summarize", "resamples", optarg, 1, 10000000, &a->resamples)) return 2;
            break;
        case OPT_EVALS:
            if (parse_list("summarize", "evals", optarg, a->evals, MAX_SEEDS, &a->nevals)) return 2;
            break;
        case 'o': a->prefix = optarg; break;
        case 'h': help(); return 0;
        default: return cli_usage_error("summarize");
        }
    }
    if (a->nevals) {
        if (optind != argc) return cli_usage_error("summarize");
        return -1;
    }
    if (!a->dir || !a->nmethods || !a->nseeds || !a->prefix || optind != argc) {
        fprintf(stderr, "opd summarize: --runs, --methods, --seeds and --out are required\n");
        return cli_usage_error("summarize");
    }
    if (!a->baseline) a->baseline = a->methods[0];
    return -1;  /* go on */
}

/* keys of the bootstrap draws: one per (method, metric), so each interval
 * is a pure function of its own samples */
static uint64_t key(int method, int metric) { return 0x5eed0000u + 64u * (uint64_t)method + (uint64_t)metric; }

/* --evals: the "pass@1,all,VALUE" row of each table */
static int summarize_evals(const summarize_args *a) {
    double x[MAX_SEEDS];
    for (int i = 0; i < a->nevals; i++) {
        opd_csv_table t;
        if (opd_csv_read(a->evals[i], &t) != 0) return cli_fail("summarize");
        int found = 0;
        for (int r = 1; r < t.nrows && !found; r++)
            if (t.ncols == 3 && !strcmp(t.cell[r * 3], "pass@1") && !strcmp(t.cell[r * 3 + 1], "all"))
                found = cell_number(&t, a->evals[i], r, 2, &x[i]) == 0 ? 1 : -1;
        opd_csv_table_free(&t);
        if (found == 0) fprintf(stderr, "opd summarize: %s: no pass@1,all row (not an opd eval --out table)\n", a->evals[i]);
        if (found != 1) return 1;
    }
    opd_interval iv;
    if (opd_bootstrap_mean(x, a->nevals, a->resamples, key(0, 63), &iv)) return cli_fail("summarize");
    double lo = x[0], hi = x[0];
    for (int i = 1; i < a->nevals; i++) { if (x[i] < lo) lo = x[i]; if (x[i] > hi) hi = x[i]; }
    char buf[128];
    fmt_interval(buf, sizeof buf, &iv, "%.3f");
    printf("pass@1 over %d evaluations: %s (min %.3f, max %.3f)\n", a->nevals, buf, lo, hi);
    return 0;
}

int cmd_summarize(int argc, char **argv) {
    summarize_args a;
    int rc = parse(&a, argc, argv);
    if (rc >= 0) return rc;
    if (a.nevals) return summarize_evals(&a);
    int M = a.nmethods, N = a.nseeds, base = -1;
    for (int m = 0; m < M; m++)
        if (!strcmp(a.methods[m], a.baseline)) base = m;
    if (base < 0) {
        fprintf(stderr, "opd summarize: --baseline %s is not one of --methods\n", a.baseline);
        return 2;
    }
    run_numbers *run = calloc((size_t)M * N, sizeof *run);
    if (!run) { fprintf(stderr, "opd summarize: out of memory\n"); return 1; }
    rc = 1;
    for (int m = 0; m < M; m++)
        for (int s = 0; s < N; s++) {
            char dir[4096];
            snprintf(dir, sizeof dir, "%s/%s/seed%d", a.dir, a.methods[m], a.seeds[s]);
            if (read_run(dir, &run[m * N + s]) != 0) goto out;
        }
    double target = a.target;
    if (isnan(target)) {
        double x[MAX_SEEDS];
        for (int s = 0; s < N; s++) x[s] = run[base * N + s].final_acc;
        target = a.target_frac * opd_stats_mean(x, N);
    }
    for (int i = 0; i < M * N; i++) {
        run_numbers *r = &run[i];
        r->sec_to_target = opd_time_to_target(r->sec, r->acc, r->nevals, target, 1);
        r->tok_to_target = opd_time_to_target(r->tok, r->acc, r->nevals, target, 1);
    }

    char path[4096], tmp[4200];
    snprintf(path, sizeof path, "%s.csv", a.prefix);
    FILE *fc = open_tmp(path, tmp, sizeof tmp);
    if (!fc) goto out;
    char mdpath[4096], mdtmp[4200];
    snprintf(mdpath, sizeof mdpath, "%s.md", a.prefix);
    FILE *fm = open_tmp(mdpath, mdtmp, sizeof mdtmp);
    if (!fm) { fclose(fc); remove(tmp); goto out; }

    fprintf(fc, "method,seeds,final_acc,final_acc_lo,final_acc_hi,eval_se,d_acc,d_acc_lo,d_acc_hi,"
                "reached,sec_to_target,sec_to_target_lo,sec_to_target_hi,speedup,speedup_lo,speedup_hi,speedup_n,"
                "tok_to_target,tok_speedup,tok_speedup_lo,tok_speedup_hi,"
                "train_s,train_s_lo,train_s_hi,time_ratio,time_ratio_lo,time_ratio_hi,"
                "tokens,token_ratio,token_ratio_lo,token_ratio_hi,"
                "peak_mib,peak_mib_lo,peak_mib_hi,peak_ratio,peak_ratio_lo,peak_ratio_hi,target\n");
    fprintf(fm, "%d seeds per method; mean [95%% bootstrap interval over seeds, %d resamples]; "
                "paired columns against %s on the same seeds; target pass@1 %.3f\n\n",
            N, a.resamples, a.baseline, target);
    fprintf(fm, "| method | final pass@1 | vs %s | reached | s to target | speedup to target | "
                "train s | x %s time | tokens | x %s tokens | peak MiB | x %s memory |\n",
            a.baseline, a.baseline, a.baseline, a.baseline);
    fprintf(fm, "|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (int m = 0; m < M; m++) {
        double acc[MAX_SEEDS], bacc[MAX_SEEDS], st[MAX_SEEDS], bst[MAX_SEEDS], kt[MAX_SEEDS],
            bkt[MAX_SEEDS], ts[MAX_SEEDS], bts[MAX_SEEDS], tk[MAX_SEEDS], btk[MAX_SEEDS],
            pk[MAX_SEEDS], bpk[MAX_SEEDS];
        for (int s = 0; s < N; s++) {
            const run_numbers *r = &run[m * N + s], *b = &run[base * N + s];
            acc[s] = r->final_acc; bacc[s] = b->final_acc;
            st[s] = r->sec_to_target; bst[s] = b->sec_to_target;
            kt[s] = r->tok_to_target; bkt[s] = b->tok_to_target;
            ts[s] = r->train_s; bts[s] = b->train_s;
            tk[s] = r->tokens; btk[s] = b->tokens;
            pk[s] = r->peak_mib; bpk[s] = b->peak_mib;
        }
        int R = a.resamples, used, reached, sp_n, tsp_n;
        opd_interval iacc, dacc;
        if (opd_bootstrap_mean(acc, N, R, key(m, 0), &iacc) ||
            opd_bootstrap_paired(acc, bacc, N, R, key(m, 1), &dacc)) {
            cli_fail("summarize");
            fclose(fc); fclose(fm); remove(tmp); remove(mdtmp);
            goto out;
        }
        double se = a.eval_n > 0 ? opd_pass_at_1_se(iacc.mean, a.eval_n) : NAN;
        opd_interval ist = interval_of_finite(st, N, R, key(m, 2), &reached);
        opd_interval isp = ratio_of(bst, st, N, R, key(m, 3), &sp_n);
        opd_interval ikt = interval_of_finite(kt, N, R, key(m, 4), &used);
        opd_interval itsp = ratio_of(bkt, kt, N, R, key(m, 5), &tsp_n);
        opd_interval its = interval_of_finite(ts, N, R, key(m, 6), &used);
        opd_interval itr = ratio_of(ts, bts, N, R, key(m, 7), &used);
        opd_interval itk = interval_of_finite(tk, N, R, key(m, 8), &used);
        opd_interval ikr = ratio_of(tk, btk, N, R, key(m, 9), &used);
        opd_interval ipk = interval_of_finite(pk, N, R, key(m, 10), &used);
        opd_interval ipr = ratio_of(pk, bpk, N, R, key(m, 11), &used);
        fprintf(fc, "%s,%d,%.4f,%.4f,%.4f,%.4f,%.4f,%.4f,%.4f,%d,%.3f,%.3f,%.3f,%.3f,%.3f,%.3f,%d,"
                    "%.0f,%.3f,%.3f,%.3f,%.3f,%.3f,%.3f,%.3f,%.3f,%.3f,%.0f,%.3f,%.3f,%.3f,"
                    "%.1f,%.1f,%.1f,%.3f,%.3f,%.3f,%.4f\n",
                a.methods[m], N, iacc.mean, iacc.lo, iacc.hi, se, dacc.mean, dacc.lo, dacc.hi,
                reached, ist.mean, ist.lo, ist.hi, isp.mean, isp.lo, isp.hi, sp_n,
                ikt.mean, itsp.mean, itsp.lo, itsp.hi, its.mean, its.lo, its.hi,
                itr.mean, itr.lo, itr.hi, itk.mean, ikr.mean, ikr.lo, ikr.hi,
                ipk.mean, ipk.lo, ipk.hi, ipr.mean, ipr.lo, ipr.hi, target);
        char c_acc[128], c_d[128], c_st[128], c_sp[128], c_ts[128], c_tr[128], c_kr[128], c_pk[128], c_pr[128];
        fmt_interval(c_acc, sizeof c_acc, &iacc, "%.3f");
        fmt_interval(c_d, sizeof c_d, &dacc, "%+.3f");
        if (reached) fmt_interval(c_st, sizeof c_st, &ist, "%.1f"); else snprintf(c_st, sizeof c_st, "-");
        if (sp_n) {
            fmt_interval(c_sp, sizeof c_sp, &isp, "%.2f");
            if (sp_n < N) { size_t l = strlen(c_sp); snprintf(c_sp + l, sizeof c_sp - l, " (%d seeds)", sp_n); }
        } else snprintf(c_sp, sizeof c_sp, "-");
        fmt_interval(c_ts, sizeof c_ts, &its, "%.1f");
        fmt_interval(c_tr, sizeof c_tr, &itr, "%.2f");
        fmt_interval(c_kr, sizeof c_kr, &ikr, "%.2f");
        fmt_interval(c_pk, sizeof c_pk, &ipk, "%.0f");
        fmt_interval(c_pr, sizeof c_pr, &ipr, "%.2f");
        if (m == base) { snprintf(c_d, sizeof c_d, "(baseline)"); }
        fprintf(fm, "| %s | %s | %s | %d/%d | %s | %s | %s | %s | %.0f | %s | %s | %s |\n",
                a.methods[m], c_acc, c_d, reached, N, c_st, c_sp, c_ts, c_tr, itk.mean, c_kr, c_pk, c_pr);
    }
    if (a.eval_n > 0)
        fprintf(fm, "\nOne evaluation's own standard error, sqrt(p (1 - p) / n) at n = %d problems: "
                    "at most %.3f (p = 0.5).\n", a.eval_n, opd_pass_at_1_se(0.5, a.eval_n));
    if (close_rename(fc, tmp, path) != 0) { fclose(fm); remove(mdtmp); goto out; }
    if (close_rename(fm, mdtmp, mdpath) != 0) goto out;

    /* the curves: the i-th evaluation of every seed (the same step in each) */
    snprintf(path, sizeof path, "%s_curves.csv", a.prefix);
    fc = open_tmp(path, tmp, sizeof tmp);
    if (!fc) goto out;
    fprintf(fc, "method,eval,step,sec_mean,tokens_mean,acc_mean,acc_lo,acc_hi\n");
    for (int m = 0; m < M; m++) {
        int n = run[m * N].nevals;
        for (int s = 1; s < N; s++)
            if (run[m * N + s].nevals < n) n = run[m * N + s].nevals;
        for (int i = 0; i < n; i++) {
            double acc[MAX_SEEDS], sec[MAX_SEEDS], tok[MAX_SEEDS];
            for (int s = 0; s < N; s++) {
                acc[s] = run[m * N + s].acc[i]; sec[s] = run[m * N + s].sec[i]; tok[s] = run[m * N + s].tok[i];
            }
            opd_interval iv;
            opd_bootstrap_mean(acc, N, a.resamples, key(m, 32 + i % 32), &iv);
            fprintf(fc, "%s,%d,%.0f,%.3f,%.0f,%.4f,%.4f,%.4f\n", a.methods[m], i, run[m * N].step[i],
                    opd_stats_mean(sec, N), opd_stats_mean(tok, N), iv.mean, iv.lo, iv.hi);
        }
    }
    if (close_rename(fc, tmp, path) != 0) goto out;
    printf("wrote %s.csv, %s.md, %s_curves.csv (%d methods x %d seeds, target %.4f)\n", a.prefix,
           a.prefix, a.prefix, M, N, target);
    rc = 0;
out:
    free(run);
    return rc;
}

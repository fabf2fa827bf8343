/* cmd_data.c — `opd data`: the built-in task's train/valid/test CSV splits. */
#include "cli.h"
#include "opd_data.h"

#include <stdio.h>
#include <stdlib.h>

/* long options without a short letter */
enum { OPT_MIN_STEPS = 256, OPT_MAX_STEPS, OPT_TRAIN, OPT_VALID, OPT_TEST, OPT_FAMILY, OPT_HOPS, OPT_CHASE, OPT_SORTED };

int cmd_data(int argc, char **argv) {
    static const struct option opts[] = {
        {"out", required_argument, 0, 'o'}, {"seed", required_argument, 0, 's'},
        {"min-steps", required_argument, 0, OPT_MIN_STEPS}, {"max-steps", required_argument, 0, OPT_MAX_STEPS},
        {"train", required_argument, 0, OPT_TRAIN}, {"valid", required_argument, 0, OPT_VALID},
        {"test", required_argument, 0, OPT_TEST}, {"family", required_argument, 0, OPT_FAMILY},
        {"hops", required_argument, 0, OPT_HOPS}, {"chase", no_argument, 0, OPT_CHASE},
        {"sorted", no_argument, 0, OPT_SORTED},
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    opd_task_config tc;
    opd_task_config_default(&tc);
    const char *out = NULL;
    int n[3] = {4000, 200, 500};
    /* options given, applied over the family's defaults once all are read */
    int min_steps = 0, max_steps = 0, hops = 0, chase = 0, sorted = 0;
    opd_task_family family = OPD_TASK_CHAIN;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:s:h", opts, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 's': if (cli_u64("data", "seed", optarg, &tc.seed)) return 2; break;
        case OPT_MIN_STEPS: if (cli_int("data", "min-steps", optarg, 1, OPD_TASK_MAX_STEPS, &min_steps)) return 2; break;
        case OPT_MAX_STEPS: if (cli_int("data", "max-steps", optarg, 1, OPD_TASK_MAX_STEPS, &max_steps)) return 2; break;
        case OPT_FAMILY:
            if (opd_task_family_parse(optarg, &family) != 0) return cli_fail("data");
            break;
        case OPT_CHASE: chase = 1; break;
        case OPT_SORTED: sorted = 1; break;
        case OPT_HOPS: if (cli_int("data", "hops", optarg, 1, OPD_TASK_PLAN_MAX_HOPS, &hops)) return 2; break;
        case OPT_TRAIN: if (cli_int("data", "train", optarg, 1, 10000000, &n[0])) return 2; break;
        case OPT_VALID: if (cli_int("data", "valid", optarg, 1, 10000000, &n[1])) return 2; break;
        case OPT_TEST: if (cli_int("data", "test", optarg, 1, 10000000, &n[2])) return 2; break;
        case 'h':
            printf("Usage: opd data --out DIR [OPTIONS]\n"
                   "Generate the modular-arithmetic chain task: DIR/train.csv, valid.csv, test.csv.\n\n"
                   "  -o, --out DIR        output directory (created)\n"
                   "  -s, --seed N         generator seed (default 1234)\n"
                   "      --min-steps N    fewest steps per problem (default 24)\n"
                   "      --max-steps N    most steps per problem, <= %d (default 40)\n"
                   "      --train N / --valid N / --test N   split sizes (4000 / 200 / 500)\n"
                   "      --family F       chain (default) or plan: the start value is a chase of\n"
                   "                       --hops hops through a map in the prompt (opd_data.h);\n"
                   "                       plan's defaults: steps 4..10 (at most %d)\n"
                   "      --hops N         plan: hops, 1..%d (default %d)\n"
                   "      --chase          plan: the start written as its key letter, and the\n"
                   "                       solution writes the chase out first, a key and its\n"
                   "                       value per hop (\"C7H2\"), then the chain steps\n"
                   "      --sorted         plan: the map's pairs in key order (A.. J), not shuffled\n"
                   "      --family shift   a chain prompt with '=' before its '>', whose start value\n"
                   "                       is s + 1 (mod 10), not s: one early token a chain-trained\n"
                   "                       student gets wrong (at most %d steps)\n",
                   OPD_TASK_MAX_STEPS, OPD_TASK_PLAN_MAX_STEPS, OPD_TASK_PLAN_MAX_HOPS,
                   OPD_TASK_PLAN_HOPS_DEFAULT, OPD_TASK_SHIFT_MAX_STEPS);
            return 0;
        default: return cli_usage_error("data");
        }
    }
    if (!out || optind != argc) { fprintf(stderr, "opd data: --out DIR is required\n"); return cli_usage_error("data"); }
    uint64_t seed = tc.seed;
    if (family == OPD_TASK_PLAN) opd_task_config_plan(&tc);
    tc.family = family;
    tc.seed = seed;
    if (min_steps) tc.min_steps = min_steps;
    if (max_steps) tc.max_steps = max_steps;
    if (hops) tc.hops = hops;
    tc.chase = chase;
    tc.sorted = sorted;
    if ((chase || sorted) && tc.family != OPD_TASK_PLAN) {
        fprintf(stderr, "opd data: --chase and --sorted need --family plan\n");
        return cli_usage_error("data");
    }
    if (opd_task_config_validate(&tc) != 0) return cli_fail("data");
    if (cli_mkdir_p("data", out) != 0) return 1;
    static const opd_split splits[3] = {OPD_SPLIT_TRAIN, OPD_SPLIT_VALID, OPD_SPLIT_TEST};
    for (int i = 0; i < 3; i++) {
        opd_task *t = opd_dataset_generate(&tc, splits[i], n[i]);
        char name[32];
        snprintf(name, sizeof name, "%s.csv", opd_split_name(splits[i]));
        char *p = cli_path_join(out, name);
        int rc = opd_dataset_write_csv(p, t, n[i]);
        if (rc == 0) printf("wrote %s (%d problems, %s, %d..%d steps)\n", p, n[i],
                           opd_task_family_name(tc.family), tc.min_steps, tc.max_steps);
        free(p);
        opd_dataset_free(t);
        if (rc != 0) return cli_fail("data");
    }
    return 0;
}

/* cmd_data.c — `opd data`: the built-in task's train/valid/test CSV splits. */
#include "cli.h"
#include "opd_data.h"

#include <stdio.h>
#include <stdlib.h>

/* long options without a short letter */
enum { OPT_MIN_STEPS = 256, OPT_MAX_STEPS, OPT_TRAIN, OPT_VALID, OPT_TEST };

int cmd_data(int argc, char **argv) {
    static const struct option opts[] = {
        {"out", required_argument, 0, 'o'}, {"seed", required_argument, 0, 's'},
        {"min-steps", required_argument, 0, OPT_MIN_STEPS}, {"max-steps", required_argument, 0, OPT_MAX_STEPS},
        {"train", required_argument, 0, OPT_TRAIN}, {"valid", required_argument, 0, OPT_VALID},
        {"test", required_argument, 0, OPT_TEST}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    opd_task_config tc;
    opd_task_config_default(&tc);
    const char *out = NULL;
    int n[3] = {4000, 200, 500};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:s:h", opts, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 's': if (cli_u64("data", "seed", optarg, &tc.seed)) return 2; break;
        case OPT_MIN_STEPS: if (cli_int("data", "min-steps", optarg, 1, OPD_TASK_MAX_STEPS, &tc.min_steps)) return 2; break;
        case OPT_MAX_STEPS: if (cli_int("data", "max-steps", optarg, 1, OPD_TASK_MAX_STEPS, &tc.max_steps)) return 2; break;
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
                   "      --train N / --valid N / --test N   split sizes (4000 / 200 / 500)\n",
                   OPD_TASK_MAX_STEPS);
            return 0;
        default: return cli_usage_error("data");
        }
    }
    if (!out || optind != argc) { fprintf(stderr, "opd data: --out DIR is required\n"); return cli_usage_error("data"); }
    if (opd_task_config_validate(&tc) != 0) return cli_fail("data");
    if (cli_mkdir_p("data", out) != 0) return 1;
    static const opd_split splits[3] = {OPD_SPLIT_TRAIN, OPD_SPLIT_VALID, OPD_SPLIT_TEST};
    for (int i = 0; i < 3; i++) {
        opd_task *t = opd_dataset_generate(&tc, splits[i], n[i]);
        char name[32];
        snprintf(name, sizeof name, "%s.csv", opd_split_name(splits[i]));
        char *p = cli_path_join(out, name);
        int rc = opd_dataset_write_csv(p, t, n[i]);
        if (rc == 0) printf("wrote %s (%d problems, %d..%d steps)\n", p, n[i], tc.min_steps, tc.max_steps);
        free(p);
        opd_dataset_free(t);
        if (rc != 0) return cli_fail("data");
    }
    return 0;
}

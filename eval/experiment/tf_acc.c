/* tf_acc.c — teacher-forced accuracy by solution position: the plan family's
 * probe (opd_data.h, "A second family: plan").
 *
 *   tf_acc MODEL DATA.csv [N]
 *
 * Feeds [<bos> prompt solution <eos>] of the first N problems (default all)
 * and counts, at every position, whether the model's argmax is the reference
 * token. Prints the decision's accuracy (solution character
 * OPD_TASK_PLAN_DECISION_POS), the routine's (every other solution token and
 * <eos>), and the problems whose routine is right at every token. */
#include "harness.h"
#include "opd_io.h"

#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: tf_acc MODEL DATA.csv [N]\n"); return 2; }
    opd_model m;
    if (opd_model_load(&m, argv[1], NULL) != 0) { fprintf(stderr, "%s\n", opd_last_error()); return 1; }
    opd_task *tasks;
    int n;
    if (opd_dataset_read_csv(argv[2], &tasks, &n) != 0) { fprintf(stderr, "%s\n", opd_last_error()); return 1; }
    if (argc > 3 && atoi(argv[3]) > 0 && atoi(argv[3]) < n) n = atoi(argv[3]);
    opd_tokenizer tok;
    opd_tokenizer_default(&tok);
    const int V = m.cfg.vocab_size, D = OPD_TASK_PLAN_DECISION_POS;
    long dec_ok = 0, rout_ok = 0, rout_n = 0, rout_all = 0;
    for (int i0 = 0; i0 < n; i0 += 32) {
        int B = n - i0 < 32 ? n - i0 : 32, idx[32], *tokens, *pad, S;
        float *mask;
        for (int b = 0; b < B; b++) idx[b] = i0 + b;
        harness_sft_batch(&tok, tasks, idx, B, &tokens, &pad, &mask, &S);
        opd_model_forward_inference(&m, tokens, pad, B, S);
        for (int b = 0; b < B; b++) {
            int first = -1, all = 1;
            for (int t = 0; t < S - 1; t++) {
                if (!mask[(size_t)b * S + t]) continue;
                if (first < 0) first = t;
                const float *lg = m.acts.logits + ((size_t)b * S + t) * V;
                int best = 0;
                for (int v = 1; v < V; v++) if (lg[v] > lg[best]) best = v;
                int ok = best == tokens[(size_t)b * S + t + 1];
                if (t - first == D) dec_ok += ok;
                else { rout_ok += ok; rout_n++; all &= ok; }
            }
            rout_all += all;
        }
        free(tokens); free(pad); free(mask);
    }
    printf("%s on %s (%d problems, teacher-forced): decision %.4f  routine per token %.4f  "
           "routine all right %.4f\n", argv[1], argv[2], n, (double)dec_ok / n,
           (double)rout_ok / rout_n, (double)rout_all / n);
    opd_dataset_free(tasks);
    opd_model_free(&m);
    return 0;
}

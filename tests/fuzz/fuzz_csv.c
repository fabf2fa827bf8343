/* libFuzzer harness: the task CSV reader (opd_dataset_read_csv) and the
 * generic table reader a resumed run reads its logs with (opd_csv_read). */
#include "fuzz_common.h"
#include "opd_data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write("in.csv", data, size);
    opd_task *tasks;
    int n;
    if (opd_dataset_read_csv(path, &tasks, &n) == 0) opd_dataset_free(tasks);
    opd_csv_table t;
    if (opd_csv_read(path, &t) == 0) opd_csv_table_free(&t);
    unlink(path);
    return 0;
}

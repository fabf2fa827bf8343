/* test_loss.c — placeholder suite: being written. */
#include "opd.h"
#include "testutil.h"
static void test_placeholder(void) { CU_ASSERT(1); }
int main(void) {
    if (CU_initialize_registry() != CUE_SUCCESS) return 2;
    static const opd_test_case cases[] = {{"placeholder", test_placeholder}, {0, 0}};
    opd_test_suite("loss", cases);
    return opd_test_run();
}

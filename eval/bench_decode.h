/* bench_decode.h — `opd bench-decode`: KV-cached decode throughput by
 * position, and KV cache memory for a full vs a truncated horizon. */
#ifndef OPD_BENCH_DECODE_H
#define OPD_BENCH_DECODE_H
/* argv[0] is the command name; options: --batch N, --steps N (timed decode
 * steps per position window). Returns 0, or 2 on a usage error. */
int opd_bench_decode(int argc, char **argv);
#endif

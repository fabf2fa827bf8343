/* opd.c — the command-line tool: `opd COMMAND [OPTIONS]`. */
#include "config.h"
#include "opd.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "Usage: opd COMMAND [OPTIONS]\n"
            "On-policy distillation with rollout-horizon control (reference implementation).\n\n"
            "Commands:\n"
            "  help               this text\n\n"
            "Run 'opd COMMAND --help' for a command's options.\n"
            "  -h, --help         show this help\n"
            "  -V, --version      show the version\n");
}

int main(int argc, char **argv) {
    if (argc < 2) { usage(stderr); return 2; }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) { usage(stdout); return 0; }
    if (!strcmp(cmd, "-V") || !strcmp(cmd, "--version")) { printf("opd %s\n", PACKAGE_VERSION); return 0; }
    fprintf(stderr, "opd: unknown command '%s' (try 'opd --help')\n", cmd);
    return 2;
}

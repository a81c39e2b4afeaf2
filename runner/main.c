// Placeholder entry point of the skeleton commit; [foundation] replaces it.
#include "runner/exitcode.h"

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--exit-codes") == 0) {
        exitcode_print(argc > 2 && strcmp(argv[2], "--json") == 0);
        return 0;
    }
    fprintf(stderr, "runner: not built yet\n");
    return EXIT_INTERNAL;
}

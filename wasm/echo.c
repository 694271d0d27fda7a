/* Without arguments: copies stdin to stdout. With a number N: writes N bytes of 'x' to stdout.
 * Either way it ends with one line on stderr. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    char buffer[4096];
    long total = 0;
    if (argc > 1) {
        long wanted = atol(argv[1]);
        memset(buffer, 'x', sizeof buffer);
        while (total < wanted) {
            size_t chunk = (size_t)(wanted - total < (long)sizeof buffer ? wanted - total
                                                                         : (long)sizeof buffer);
            fwrite(buffer, 1, chunk, stdout);
            total += (long)chunk;
        }
    } else {
        size_t got;
        while ((got = fread(buffer, 1, sizeof buffer, stdin)) > 0) {
            fwrite(buffer, 1, got, stdout);
            total += (long)got;
        }
    }
    fflush(stdout);
    fprintf(stderr, "echo: %ld bytes\n", total);
    return 0;
}

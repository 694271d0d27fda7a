/* Reads the file named by argv[1] and writes it, upper-cased, to the file named by argv[2].
 * Prints the number of bytes copied; on any failure prints the reason to stderr and exits 1. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: upcase INPUT OUTPUT\n");
        return 1;
    }
    FILE *in = fopen(argv[1], "rb");
    if (in == NULL) {
        fprintf(stderr, "upcase: cannot read %s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    FILE *out = fopen(argv[2], "wb");
    if (out == NULL) {
        fprintf(stderr, "upcase: cannot write %s: %s\n", argv[2], strerror(errno));
        fclose(in);
        return 1;
    }
    long copied = 0;
    int c;
    while ((c = fgetc(in)) != EOF) {
        fputc(toupper(c), out);
        copied++;
    }
    fclose(in);
    if (fclose(out) != 0) {
        fprintf(stderr, "upcase: cannot finish %s: %s\n", argv[2], strerror(errno));
        return 1;
    }
    printf("copied %ld bytes\n", copied);
    return 0;
}

/* A friendly first task for dms: greets whoever NAME (or the first argument) names, then shows
 * the arguments and environment it was given. Built to WebAssembly (WASI) by `make fixtures`. */
#include <stdio.h>
#include <stdlib.h>

extern char **environ;

int main(int argc, char **argv) {
    const char *name = argc > 1 ? argv[1] : getenv("NAME");
    if (name == NULL || name[0] == '\0') {
        name = "world";
    }
    printf("Hello, %s! Greetings from a WebAssembly task run by dms.\n", name);
    for (int i = 0; i < argc; i++) {
        printf("arg %d: %s\n", i, argv[i]);
    }
    for (char **var = environ; var != NULL && *var != NULL; var++) {
        printf("env: %s\n", *var);
    }
    return 0;
}

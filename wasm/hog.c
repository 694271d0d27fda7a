/* Allocates (and touches) memory 1 MiB at a time until malloc fails, then reports how much it got
 * and exits 2. Under a memory limit it stops at the limit; without one it would take everything.
 * The blocks form a linked list that is walked at the end, so no optimiser can drop them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void) {
    const size_t chunk = 1024 * 1024;
    void *head = NULL;
    for (;;) {
        void **block = malloc(chunk);
        if (block == NULL) {
            break;
        }
        memset(block, 1, chunk);
        *block = head;
        head = block;
    }
    size_t blocks = 0;
    for (void *at = head; at != NULL; at = *(void **)at) {
        blocks++;
    }
    printf("allocated %zu MiB before malloc failed\n", blocks);
    return 2;
}

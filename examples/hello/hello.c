/* hello: print the machine architecture as `uname -m` reports it (uname(2)'s `machine`). */
#include <stdio.h>
#include <stdlib.h>
#include <sys/utsname.h>

int main(void)
{
    struct utsname u;

    if (uname(&u) != 0) {
        perror("uname");
        return EXIT_FAILURE;
    }
    printf("hello from %s\n", u.machine);
    return EXIT_SUCCESS;
}

/* races_ctor_main: libraces_ctor's thread is running before main; main
 * stops it and says so (races_ctor.c, test_races.py). */
#include <stdio.h>

void races_ctor_stop(void);

int main(void)
{
    races_ctor_stop();
    printf("races: the constructor's thread stopped\n");
    return 0;
}

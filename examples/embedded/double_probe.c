/* examples/embedded/double_probe.c: the negative control of the soft-double check. It uses double
 * arithmetic on purpose, so check_symbols.cmake must find double-precision helpers in its image
 * (on a single-precision FPU they come from libgcc); if it did not, the check could not fail. */
#include "semihosting.h"

volatile double value = 1.5;

int main(void) {
    value = value * 3.0 + 0.25;
    semihosting_write(value > 4.0 ? "ok\n" : "unexpected\n");
    return 0;
}

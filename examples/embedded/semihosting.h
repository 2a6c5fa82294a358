/* examples/embedded/semihosting.h: the two ARM semihosting calls the firmware needs (QEMU runs
 * them on the host with -semihosting-config enable=on): write a string to the host's stdout, and
 * exit with a status code that becomes QEMU's own (SYS_EXIT_EXTENDED; plain SYS_EXIT cannot carry a
 * code on 32-bit ARM). */
#ifndef DISTILL_EMBEDDED_SEMIHOSTING_H
#define DISTILL_EMBEDDED_SEMIHOSTING_H

#ifdef __cplusplus
extern "C" {
#endif

void semihosting_write(const char* text);
__attribute__((noreturn)) void semihosting_exit(int code);

#ifdef __cplusplus
}
#endif

#endif

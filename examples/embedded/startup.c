/* examples/embedded/startup.c: a minimal Cortex-M4 start-up for QEMU's mps2-an386 board.
 *
 * The vector table (initial stack pointer, reset and fault handlers), the reset handler (enable
 * the FPU, copy .data from flash, zero .bss, run static constructors, call main, exit through
 * semihosting with main's return value), and the semihosting calls. No C library start-up files:
 * the firmware links with -nostartfiles and no heap (there is no _sbrk, so any malloc would fail
 * to link). */
#include <stdint.h>

#include "semihosting.h"

extern uint32_t __data_load__, __data_start__, __data_end__, __bss_start__, __bss_end__, __stack_top__;
extern void (*__init_array_start[])(void);
extern void (*__init_array_end[])(void);
int main(void);

static int semihosting_call(int operation, void* argument) {
    register int r0 __asm__("r0") = operation;
    register void* r1 __asm__("r1") = argument;
    __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

void semihosting_write(const char* text) { semihosting_call(0x04 /* SYS_WRITE0 */, (void*)text); }

void semihosting_exit(int code) {
    /* SYS_EXIT_EXTENDED: ADP_Stopped_ApplicationExit and the exit code. */
    uint32_t block[2] = {0x20026u, (uint32_t)code};
    semihosting_call(0x20, block);
    for (;;) {
    }
}

void Reset_Handler(void) {
    /* CPACR: full access to the coprocessors CP10 and CP11 (the FPU) before any float instruction. */
    *(volatile uint32_t*)0xE000ED88u |= 0xFu << 20;
    __asm__ volatile("dsb\n\tisb" ::: "memory");
    for (uint32_t *src = &__data_load__, *dst = &__data_start__; dst < &__data_end__;) *dst++ = *src++;
    for (uint32_t* dst = &__bss_start__; dst < &__bss_end__;) *dst++ = 0;
    for (void (**f)(void) = __init_array_start; f < __init_array_end; ++f) (*f)();
    semihosting_exit(main());
}

static void Fault_Handler(void) {
    semihosting_write("fault: the firmware took an exception\n");
    semihosting_exit(3);
}

__attribute__((section(".vectors"), used)) void (*const vector_table[16])(void) = {
    (void (*)(void))(&__stack_top__), /* initial stack pointer */
    Reset_Handler,
    Fault_Handler, /* NMI */
    Fault_Handler, /* HardFault */
    Fault_Handler, /* MemManage */
    Fault_Handler, /* BusFault */
    Fault_Handler, /* UsageFault */
    0, 0, 0, 0,
    Fault_Handler, /* SVCall */
    Fault_Handler, /* DebugMonitor */
    0,
    Fault_Handler, /* PendSV */
    Fault_Handler, /* SysTick */
};

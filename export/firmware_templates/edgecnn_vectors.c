// A minimal Cortex-M vector table so a semihosting (rdimon) image boots on QEMU's MPS2 AN386 board
// (link with -Wl,--section-start=.vectors=0x0 -Wl,-u,edgecnn_vectors). On a real board the
// vendor's startup code replaces this file. Reset enables the FPU (CPACR CP10/CP11) before newlib's
// _start, because the library is built for -mfloat-abi=hard.
#include <stdint.h>

extern void _start(void);

static void fault_exit(void) {
  // Semihosting SYS_EXIT(ADP_Stopped_RunTimeErrorUnknown): QEMU exits non-zero.
  __asm volatile("movs r0, #0x18\n ldr r1, =0x20023\n bkpt 0xab\n b .");
}

static void reset(void) {
  volatile uint32_t* const cpacr = (volatile uint32_t*)0xE000ED88u;
  *cpacr |= (0xFu << 20);
  __asm volatile("dsb\n isb");
  _start();
}

__attribute__((section(".vectors"), used)) void (*const edgecnn_vectors[16])(void) = {
    (void (*)(void))0x21fff000u,  // initial MSP (inside the board's PSRAM)
    reset,
    fault_exit, fault_exit, fault_exit, fault_exit, fault_exit,  // NMI .. UsageFault
    0, 0, 0, 0,
    fault_exit, fault_exit, 0, fault_exit, fault_exit,  // SVC, DebugMon, -, PendSV, SysTick
};

# examples/embedded/check_symbols.cmake: the Cortex-M4 firmware is float-only and heap-free.
#   cmake -DNM=arm-none-eabi-nm -DELF=firmware.elf -DCONTROL=double_probe.elf -P check_symbols.cmake
# The single-precision FPU of a Cortex-M4 has no double instructions, so any double arithmetic in
# the image shows up as a libgcc soft-double helper (__aeabi_dadd, __aeabi_f2d, __aeabi_cdcmple,
# __adddf3, ...); heap use shows up as malloc / operator new. Fails when the firmware has either,
# or when the control image (double arithmetic on purpose) shows no double helper.
foreach(var NM ELF CONTROL)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "check_symbols.cmake: -D${var}=... is required")
  endif()
endforeach()

set(double_helpers "(__aeabi_d[a-z0-9_]*|__aeabi_cd[a-z0-9_]*|__aeabi_[a-z0-9]*2d|__[a-z]+df[a-z0-9]*)")
set(heap "(malloc|_malloc_r|calloc|realloc|_sbrk|_Znwj|_Znaj|_Znwjj|_ZnwjSt11align_val_t)")

function(symbols_of elf out)
  execute_process(COMMAND ${NM} ${elf} OUTPUT_VARIABLE text RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${NM} ${elf} failed (${rc})")
  endif()
  set(${out} "${text}" PARENT_SCOPE)
endfunction()

symbols_of(${ELF} firmware)
string(REGEX MATCHALL " ${double_helpers}\n" doubles "${firmware}")
string(REGEX MATCHALL " ${heap}\n" heaps "${firmware}")
symbols_of(${CONTROL} control)
string(REGEX MATCHALL " ${double_helpers}\n" control_doubles "${control}")

set(failed FALSE)
if(doubles)
  string(REPLACE "\n" "" doubles "${doubles}")
  message(SEND_ERROR "${ELF} uses double arithmetic (soft-float helpers:${doubles})")
  set(failed TRUE)
endif()
if(heaps)
  string(REPLACE "\n" "" heaps "${heaps}")
  message(SEND_ERROR "${ELF} links heap functions:${heaps}")
  set(failed TRUE)
endif()
if(NOT control_doubles)
  message(SEND_ERROR "the control ${CONTROL} shows no soft-double helper: this check cannot detect double arithmetic")
  set(failed TRUE)
endif()
if(NOT failed)
  string(REPLACE "\n" "" control_doubles "${control_doubles}")
  message(STATUS "${ELF}: no soft-double helper and no heap function (the control has:${control_doubles})")
endif()

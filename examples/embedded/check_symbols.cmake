# examples/embedded/check_symbols.cmake: the Cortex-M4 firmware is float-only and heap-free.
#   cmake -DNM=arm-none-eabi-nm -DDIR=<firmware build dir> -P check_symbols.cmake
# Checks distill_embedded.elf and every per-method image (distill_size_*.elf). The single-precision
# FPU of a Cortex-M4 has no double instructions, so any double arithmetic in an image shows up as
# a libgcc soft-double helper (__aeabi_dadd, __aeabi_f2d, __aeabi_cdcmple, __adddf3, ...); heap
# use shows up as malloc / operator new. Fails when an image has either, or when the control image
# distill_double_probe.elf (double arithmetic on purpose) shows no double helper.
foreach(var NM DIR)
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

set(failed FALSE)
file(GLOB images "${DIR}/distill_embedded.elf" "${DIR}/distill_size_*.elf")
list(LENGTH images count)
if(count LESS 2)
  message(FATAL_ERROR "no firmware images in ${DIR}")
endif()
foreach(elf IN LISTS images)
  symbols_of(${elf} firmware)
  string(REGEX MATCHALL " ${double_helpers}\n" doubles "${firmware}")
  string(REGEX MATCHALL " ${heap}\n" heaps "${firmware}")
  if(doubles)
    string(REPLACE "\n" "" doubles "${doubles}")
    message(SEND_ERROR "${elf} uses double arithmetic (soft-float helpers:${doubles})")
    set(failed TRUE)
  endif()
  if(heaps)
    string(REPLACE "\n" "" heaps "${heaps}")
    message(SEND_ERROR "${elf} links heap functions:${heaps}")
    set(failed TRUE)
  endif()
endforeach()

symbols_of(${DIR}/distill_double_probe.elf control)
string(REGEX MATCHALL " ${double_helpers}\n" control_doubles "${control}")
if(NOT control_doubles)
  message(SEND_ERROR "the control distill_double_probe.elf shows no soft-double helper: this check cannot detect double arithmetic")
  set(failed TRUE)
endif()
if(NOT failed)
  list(LENGTH control_doubles n)
  message(STATUS "${count} images: no soft-double helper and no heap function (the control has ${n} double helpers)")
endif()

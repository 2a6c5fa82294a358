# examples/embedded/run_probes.cmake: runs every per-method firmware (size_probe.cpp) in QEMU; each
# must print "ok" and exit 0.   cmake -DQEMU=qemu-system-arm -DDIR=<firmware build dir> -P run_probes.cmake
file(GLOB probes "${DIR}/distill_size_*.elf")
list(LENGTH probes count)
if(count LESS 10)
  message(FATAL_ERROR "expected the per-method firmware images in ${DIR}, found ${count}")
endif()
set(failed "")
foreach(elf IN LISTS probes)
  get_filename_component(name ${elf} NAME_WE)
  execute_process(
    COMMAND ${QEMU} -M mps2-an386 -cpu cortex-m4 -nographic -monitor none -serial null
            -semihosting-config enable=on,target=native -kernel ${elf}
    OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc TIMEOUT 30)
  # QEMU's semihosting console is its standard error.
  string(STRIP "${out}${err}" out)
  if(rc EQUAL 0 AND out STREQUAL "ok")
    message(STATUS "ok   ${name}")
  else()
    message(STATUS "FAIL ${name}: exit ${rc}, output '${out}'")
    list(APPEND failed ${name})
  endif()
endforeach()
if(failed)
  message(FATAL_ERROR "failed on the Cortex-M4: ${failed}")
endif()

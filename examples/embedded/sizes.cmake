# examples/embedded/sizes.cmake: prints the code size of the example and of each method's run step
# on the Cortex-M4 as a Markdown table (docs/embedded.md):
#   cmake -DSIZE=arm-none-eabi-size -DDIR=<firmware build dir> -P sizes.cmake
# "text" is what arm-none-eabi-size reports (code + constants in flash); "step" subtracts the
# baseline image (start-up, semihosting, main), so it is the loss's own code with the libm and libgcc
# functions it pulls in.
function(text_of elf out)
  execute_process(COMMAND ${SIZE} ${elf} OUTPUT_VARIABLE text RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${SIZE} ${elf} failed")
  endif()
  string(REGEX MATCH "\n *([0-9]+)[ \t]+([0-9]+)[ \t]+([0-9]+)" row "${text}")
  set(${out} ${CMAKE_MATCH_1} PARENT_SCOPE)
  set(${out}_data ${CMAKE_MATCH_2} PARENT_SCOPE)
  set(${out}_bss ${CMAKE_MATCH_3} PARENT_SCOPE)
endfunction()
text_of(${DIR}/distill_size_baseline.elf base)
text_of(${DIR}/distill_embedded.elf example)
set(table "| image | text (B) | step (B) |\n|---|---:|---:|\n")
set(table "${table}| baseline (start-up, semihosting, main) | ${base} | 0 |\n")
math(EXPR step "${example} - ${base}")
set(table "${table}| examples/embedded (KD + CE step, checks, messages) | ${example} | ${step} |\n")
file(GLOB probes "${DIR}/distill_size_*.elf")
foreach(elf IN LISTS probes)
  get_filename_component(name ${elf} NAME_WE)
  string(REPLACE "distill_size_" "" name ${name})
  if(name STREQUAL "baseline")
    continue()
  endif()
  text_of(${elf} t)
  math(EXPR step "${t} - ${base}")
  set(table "${table}| ${name} | ${t} | ${step} |\n")
endforeach()
message("${table}")

# ctest driver for the consumer projects, run as `cmake -P run_consumer.cmake` with:
#   -DSETTINGS=<file>    the parent build's generator and compiler (written by CMakeLists.txt)
#   -DCONFIG=<config>    the configuration ctest runs ($<CONFIG>; may be empty)
#   -DSTEP=install       -DBUILD_DIR=<distill build tree> -DPREFIX=<install prefix> -DSOURCE_DIR=<distill sources>
#   -DSTEP=consumer      -DSOURCE_DIR=<consumer project> -DBINARY_DIR=<its build tree> [-DCACHE_ARGS=<-Dx=y|...>]
# A consumer step configures, builds and runs the consumer's own ctest; any failure fails the test.
cmake_minimum_required(VERSION 3.25)

include(${SETTINGS})

function(run)
  execute_process(COMMAND ${ARGV} COMMAND_ECHO STDOUT RESULT_VARIABLE result)
  if(NOT result EQUAL 0)
    message(FATAL_ERROR "command failed (${result})")
  endif()
endfunction()

set(config_args)
set(build_type_args)
if(CONFIG)
  set(config_args --config ${CONFIG})
  set(build_type_args -DCMAKE_BUILD_TYPE=${CONFIG})
endif()

if(STEP STREQUAL "install")
  file(REMOVE_RECURSE ${PREFIX})
  run(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${PREFIX} ${config_args})
  # The package must be relocatable: no path into the source tree may be baked into it.
  file(GLOB_RECURSE package_files ${PREFIX}/*.cmake)
  if(NOT package_files)
    message(FATAL_ERROR "no CMake package files were installed under ${PREFIX}")
  endif()
  foreach(file IN LISTS package_files)
    file(READ ${file} content)
    string(FIND "${content}" "${SOURCE_DIR}" at)
    if(NOT at EQUAL -1)
      message(FATAL_ERROR "${file} refers to the source tree ${SOURCE_DIR}")
    endif()
  endforeach()
elseif(STEP STREQUAL "consumer")
  string(REPLACE "|" ";" cache_args "${CACHE_ARGS}")
  set(generator_args -G ${CONSUMER_GENERATOR})
  if(CONSUMER_GENERATOR_PLATFORM)
    list(APPEND generator_args -A ${CONSUMER_GENERATOR_PLATFORM})
  endif()
  if(CONSUMER_GENERATOR_TOOLSET)
    list(APPEND generator_args -T ${CONSUMER_GENERATOR_TOOLSET})
  endif()
  # --fresh: a new cache every time (no stale compiler or package paths), but the build outputs
  # of the previous run are kept, so re-running the tests stays quick.
  run(${CMAKE_COMMAND} --fresh -S ${SOURCE_DIR} -B ${BINARY_DIR} ${generator_args}
      -C ${CONSUMER_INITIAL_CACHE} ${build_type_args} ${cache_args})
  run(${CMAKE_COMMAND} --build ${BINARY_DIR} --parallel ${CONSUMER_PARALLEL} ${config_args})
  run(${CMAKE_CTEST_COMMAND} --test-dir ${BINARY_DIR} --output-on-failure --no-tests=error -C "${CONFIG}")
else()
  message(FATAL_ERROR "unknown STEP '${STEP}'")
endif()

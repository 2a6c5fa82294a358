# Opt-in targets of the build tree (add_subdirectory, FetchContent and our own tests):
# distill::eigen, distill::xtensor, distill::thrust, distill::thrust_omp, distill::thrust_cpp.
# The logic lives in distillOptionalTargets.cmake, which the installed package shares.

include(${CMAKE_CURRENT_LIST_DIR}/distillOptionalTargets.cmake)
_distill_add_optional_targets(CORE distill)

set(_distill_opt_in_summary)
foreach(_distill_name IN ITEMS eigen xtensor thrust thrust_omp thrust_cpp)
  if(TARGET distill::${_distill_name})
    list(APPEND _distill_opt_in_summary distill::${_distill_name})
  endif()
endforeach()
list(JOIN _distill_opt_in_summary " " _distill_opt_in_summary)
message(STATUS "distill: opt-in targets: ${_distill_opt_in_summary}")
if(TARGET distill::thrust AND DISTILL_THRUST_VERSION)
  message(STATUS "distill: Thrust ${DISTILL_THRUST_VERSION} (${DISTILL_THRUST_DIR})")
endif()
unset(_distill_name)
unset(_distill_opt_in_summary)

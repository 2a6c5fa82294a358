# The opt-in targets of distill, each defined only when its dependency is found:
#
#   distill::eigen       core + Eigen3::Eigen                      (<distill/eigen.hpp>)
#   distill::xtensor     core + xtensor                            (<distill/xtensor.hpp>)
#   distill::thrust      core + Thrust headers, no device system   (<distill/thrust.hpp>)
#   distill::thrust_omp  distill::thrust + THRUST_DEVICE_SYSTEM=OMP + OpenMP::OpenMP_CXX
#   distill::thrust_cpp  distill::thrust + THRUST_DEVICE_SYSTEM=CPP (serial)
#
# Thrust: the CCCL 3 of a CUDA toolkit is preferred, so that host builds and nvcc builds see
# the same Thrust; Debian's libthrust-dev 1.17 is the fallback without a toolkit. A Thrust::Thrust
# target that already exists (found by the parent project) is used as is. Pass
# -DCMAKE_DISABLE_FIND_PACKAGE_CCCL=ON to skip the toolkit's CCCL.
# distill::thrust does not choose a device system: under nvcc Thrust defaults to CUDA; a host
# compiler needs THRUST_DEVICE_SYSTEM (link distill::thrust_omp or distill::thrust_cpp, or define it).
#
# This file is shared by the build tree (cmake/DistillDependencies.cmake) and the installed
# package (distillConfig.cmake), so add_subdirectory, FetchContent and find_package consumers get
# the same targets.

include_guard(DIRECTORY)

# _distill_add_optional_targets(CORE <core target> [IMPORTED])
#   CORE      the target every opt-in target links (distill in the build tree, distill::distill installed)
#   IMPORTED  create IMPORTED targets named distill::<name> (installed package); without it, create
#             distill_<name> with an ALIAS distill::<name> (build tree, exportable later if wanted)
# A function, so the variables the dependencies' find modules set stay out of the caller's scope.
function(_distill_add_optional_targets)
  cmake_parse_arguments(PARSE_ARGV 0 arg "IMPORTED" "CORE" "")

  # Creates distill::<name> linking CORE and the given libraries; sets <name>_target in the caller.
  macro(_distill_opt_in name)
    if(TARGET distill::${name})
      set(${name}_target "")  # already defined by an earlier find_package(distill) in this directory
    elseif(arg_IMPORTED)
      add_library(distill::${name} INTERFACE IMPORTED)
      set(${name}_target distill::${name})
    else()
      add_library(distill_${name} INTERFACE)
      add_library(distill::${name} ALIAS distill_${name})
      set_target_properties(distill_${name} PROPERTIES EXPORT_NAME ${name})
      set(${name}_target distill_${name})
    endif()
    if(${name}_target)
      target_link_libraries(${${name}_target} INTERFACE ${ARGN})
    endif()
  endmacro()

  # The dependencies' configs print STATUS lines even when QUIET (CCCL does); keep a consumer's
  # configure output quiet unless it asked for more with --log-level.
  if(NOT DEFINED CMAKE_MESSAGE_LOG_LEVEL)
    set(CMAKE_MESSAGE_LOG_LEVEL NOTICE)
  endif()

  # No version: Eigen3::Eigen exists since 3.3, and a requested 3.x would reject Eigen 5.
  find_package(Eigen3 CONFIG QUIET)
  if(TARGET Eigen3::Eigen)
    _distill_opt_in(eigen ${arg_CORE} Eigen3::Eigen)
  endif()

  find_package(xtensor CONFIG QUIET)
  if(TARGET xtensor)
    _distill_opt_in(xtensor ${arg_CORE} xtensor)
  endif()

  if(NOT TARGET Thrust::Thrust)
    # CCCL would otherwise also create CCCL::Thrust with a CUDA device system and cache options
    # for it; distill needs only the headers.
    if(NOT DEFINED CCCL_ENABLE_DEFAULT_THRUST_TARGET)
      set(CCCL_ENABLE_DEFAULT_THRUST_TARGET OFF)
    endif()
    set(toolkit_hints)
    foreach(root IN ITEMS "${CUDAToolkit_ROOT}" "$ENV{CUDAToolkit_ROOT}" "$ENV{CUDA_PATH}" "$ENV{CUDA_HOME}" /usr/local/cuda)
      if(root)
        list(APPEND toolkit_hints "${root}/lib64/cmake" "${root}/lib/cmake")
      endif()
    endforeach()
    find_package(CCCL 3 CONFIG QUIET COMPONENTS Thrust HINTS ${toolkit_hints})
    if(NOT TARGET Thrust::Thrust)
      # Pinned to 1.17: unpinned, Thrust's search could land on a toolkit's Thrust through PATH.
      find_package(Thrust 1.17 CONFIG QUIET)
    endif()
  endif()
  if(TARGET Thrust::Thrust)
    _distill_opt_in(thrust ${arg_CORE} Thrust::Thrust)
    _distill_opt_in(thrust_cpp distill::thrust)
    if(thrust_cpp_target)
      target_compile_definitions(${thrust_cpp_target} INTERFACE THRUST_DEVICE_SYSTEM=THRUST_DEVICE_SYSTEM_CPP)
    endif()
    # FindOpenMP compiles probes, so it needs C++ enabled (always the case for a C++ consumer).
    get_property(languages GLOBAL PROPERTY ENABLED_LANGUAGES)
    if(CXX IN_LIST languages)
      find_package(OpenMP QUIET COMPONENTS CXX)
    endif()
    if(TARGET OpenMP::OpenMP_CXX)
      _distill_opt_in(thrust_omp distill::thrust OpenMP::OpenMP_CXX)
      if(thrust_omp_target)
        target_compile_definitions(${thrust_omp_target} INTERFACE THRUST_DEVICE_SYSTEM=THRUST_DEVICE_SYSTEM_OMP)
      endif()
    endif()
  endif()
  # For the caller's summary: which Thrust was taken (Thrust_VERSION is set by both packages).
  set(DISTILL_THRUST_VERSION "${Thrust_VERSION}" PARENT_SCOPE)
  set(DISTILL_THRUST_DIR "${Thrust_DIR}" PARENT_SCOPE)
endfunction()

# Install rules and the CMake package: find_package(distill CONFIG [COMPONENTS eigen xtensor thrust ...]).
#
#   <prefix>/include/distill/...                         the headers
#   <prefix>/share/cmake/distill/distillConfig.cmake     re-finds the optional dependencies
#   <prefix>/share/cmake/distill/distillTargets.cmake    distill::distill (exported)
#   <prefix>/share/cmake/distill/distillConfigVersion.cmake
#   <prefix>/share/cmake/distill/distillOptionalTargets.cmake
#
# Only the core target is exported: an exported distill::eigen would name Eigen3::Eigen and
# break every consumer without Eigen. The opt-in targets are re-created by the config from the
# dependencies found on the consumer's machine.

include(CMakePackageConfigHelpers)

# Header-only: the package is architecture independent, hence share/ rather than lib/.
set(DISTILL_INSTALL_CMAKEDIR "${CMAKE_INSTALL_DATADIR}/cmake/distill"
    CACHE STRING "Where to install distill's CMake package files (relative to the prefix)")

install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/distill
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
        FILES_MATCHING PATTERN "*.hpp")

install(TARGETS distill EXPORT distillTargets)
install(EXPORT distillTargets
        NAMESPACE distill::
        FILE distillTargets.cmake
        DESTINATION ${DISTILL_INSTALL_CMAKEDIR})

configure_package_config_file(
  ${CMAKE_CURRENT_LIST_DIR}/distillConfig.cmake.in
  ${PROJECT_BINARY_DIR}/distillConfig.cmake
  INSTALL_DESTINATION ${DISTILL_INSTALL_CMAKEDIR}
  NO_SET_AND_CHECK_MACRO)
write_basic_package_version_file(
  ${PROJECT_BINARY_DIR}/distillConfigVersion.cmake
  VERSION ${PROJECT_VERSION}
  COMPATIBILITY SameMajorVersion
  ARCH_INDEPENDENT)

install(FILES
          ${PROJECT_BINARY_DIR}/distillConfig.cmake
          ${PROJECT_BINARY_DIR}/distillConfigVersion.cmake
          ${CMAKE_CURRENT_LIST_DIR}/distillOptionalTargets.cmake
        DESTINATION ${DISTILL_INSTALL_CMAKEDIR})

# Install rules: `cmake --install BUILD [--prefix P]` puts in place
#   lib/libflashkm.so*            the core library (and libflashkm_faiss.so* with FAISS)
#   include/flashkm.h             the public C header (+ flashkm_faiss.h and the C++
#                                 bridge header with FAISS)
#   bin/flashkm                   the command
#   lib/cmake/flashkm/            find_package(flashkm): targets flashkm::flashkm and,
#                                 with FAISS, flashkm::flashkm_faiss
#   lib/pkgconfig/flashkm.pc      pkg-config --cflags --libs flashkm
#   lib/python3.X/dist-packages/flashkm   the Python package (finds libflashkm in the prefix)
include(CMakePackageConfigHelpers)

set(FLASHKM_INSTALL_CMAKEDIR "${CMAKE_INSTALL_LIBDIR}/cmake/flashkm")

set(_fkm_install_targets flashkm)
if(TARGET flashkm_faiss)
  list(APPEND _fkm_install_targets flashkm_faiss)
  # libflashkm_faiss finds libflashkm beside it.
  set_target_properties(flashkm_faiss PROPERTIES INSTALL_RPATH "$ORIGIN")
endif()

install(TARGETS ${_fkm_install_targets} EXPORT flashkm-targets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(FILES ${PROJECT_SOURCE_DIR}/include/flashkm.h
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
if(TARGET flashkm_faiss)
  install(FILES ${PROJECT_SOURCE_DIR}/include/flashkm_faiss.h
    DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
  # The C++ drop-in (flashkm::Clustering) lives in faiss_shim/flashkm/.
  install(DIRECTORY ${PROJECT_SOURCE_DIR}/faiss_shim/flashkm
    DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} FILES_MATCHING PATTERN "*.h")
endif()
if(TARGET flashkm_cli)
  install(TARGETS flashkm_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
endif()

install(EXPORT flashkm-targets
  NAMESPACE flashkm::
  FILE flashkm-targets.cmake
  DESTINATION ${FLASHKM_INSTALL_CMAKEDIR})

# The package config. flashkm::flashkm needs nothing else at link time (a
# shared library with private dependencies). flashkm::flashkm_faiss's C++
# header (flashkm/clustering.h, flashkm::Clustering) derives from FAISS's
# classes, so when FAISS's own package is found the target carries it.
if(TARGET flashkm_faiss)
  set(FLASHKM_CONFIG_HAVE_FAISS ON)
else()
  set(FLASHKM_CONFIG_HAVE_FAISS OFF)
endif()
set(FLASHKM_CONFIG_HAVE_CUDA ${FLASHKM_HAVE_CUDA})
configure_package_config_file(
  ${PROJECT_SOURCE_DIR}/cmake/flashkm-config.cmake.in
  ${PROJECT_BINARY_DIR}/flashkm-config.cmake
  INSTALL_DESTINATION ${FLASHKM_INSTALL_CMAKEDIR})
# 0.x: minor versions may break the ABI (SOVERSION follows the ABI major).
write_basic_package_version_file(
  ${PROJECT_BINARY_DIR}/flashkm-config-version.cmake
  VERSION ${PROJECT_VERSION}
  COMPATIBILITY SameMinorVersion)
install(FILES
  ${PROJECT_BINARY_DIR}/flashkm-config.cmake
  ${PROJECT_BINARY_DIR}/flashkm-config-version.cmake
  DESTINATION ${FLASHKM_INSTALL_CMAKEDIR})

# pkg-config. The prefix is resolved at install time so that
# `cmake --install --prefix P` yields a file that points into P.
install(CODE "
  set(FKM_PC_PREFIX \"\${CMAKE_INSTALL_PREFIX}\")
  set(CMAKE_INSTALL_LIBDIR \"${CMAKE_INSTALL_LIBDIR}\")
  set(CMAKE_INSTALL_INCLUDEDIR \"${CMAKE_INSTALL_INCLUDEDIR}\")
  set(PROJECT_DESCRIPTION \"${PROJECT_DESCRIPTION}\")
  set(PROJECT_VERSION \"${PROJECT_VERSION}\")
  configure_file(\"${PROJECT_SOURCE_DIR}/cmake/flashkm.pc.in\" \"${PROJECT_BINARY_DIR}/flashkm.pc\" @ONLY)
")
install(FILES ${PROJECT_BINARY_DIR}/flashkm.pc
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

# The Python package (pure Python) in python3's own layout below the prefix
# (Debian: lib/python3.X/dist-packages); from there it finds PREFIX/lib.
set(FLASHKM_PYTHON_INSTALL_DIR "" CACHE STRING
    "Where cmake --install puts the flashkm Python package, relative to the prefix (empty: ask python3)")
set(_fkm_pydir "${FLASHKM_PYTHON_INSTALL_DIR}")
if(NOT _fkm_pydir)
  # Debian's interpreter first (the one that sees python3-numpy and
  # python3-faiss) unless the caller names one with Python3_EXECUTABLE.
  if(NOT Python3_EXECUTABLE AND EXISTS /usr/bin/python3)
    set(Python3_EXECUTABLE /usr/bin/python3)
  endif()
  find_package(Python3 COMPONENTS Interpreter)
  if(NOT Python3_Interpreter_FOUND)
    message(FATAL_ERROR "no python3 to place the Python package with; set "
                        "FLASHKM_PYTHON_INSTALL_DIR (relative to the prefix) or Python3_EXECUTABLE")
  endif()
  # python3's own layout below the prefix: Debian's dist-packages, else
  # site-packages.
  execute_process(
    COMMAND ${Python3_EXECUTABLE} -c "import sys; print('dist-packages' if any(p.endswith('dist-packages') for p in sys.path) else 'site-packages')"
    OUTPUT_VARIABLE _fkm_pysub OUTPUT_STRIP_TRAILING_WHITESPACE COMMAND_ERROR_IS_FATAL ANY)
  set(_fkm_pydir "lib/python${Python3_VERSION_MAJOR}.${Python3_VERSION_MINOR}/${_fkm_pysub}")
endif()
set(FLASHKM_PYTHON_DIR "${_fkm_pydir}" CACHE INTERNAL "where the Python package is installed")
install(DIRECTORY ${PROJECT_SOURCE_DIR}/python/flashkm DESTINATION ${_fkm_pydir}
  PATTERN "__pycache__" EXCLUDE)

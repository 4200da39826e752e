# cmake --install into a fresh prefix, then use the installed tree the three
# ways a user would: the command, find_package(flashkm), pkg-config.
# -DBUILD=build dir -DWORK=scratch dir -DSRC=consumer sources -DLIBDIR=lib dir
# name -DHAVE_FAISS=0|1 -DPYDIR=Python package dir below the prefix (or empty)
# -DPYTHON=the python3 that chose it
cmake_minimum_required(VERSION 3.25)
set(prefix "${WORK}/prefix")
file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")

function(run what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  message(STATUS "${what}: exit ${rc}\n${out}${err}")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "FAILED: ${what}")
  endif()
  set(out "${out}" PARENT_SCOPE)
endfunction()

run("install" ${CMAKE_COMMAND} --install "${BUILD}" --prefix "${prefix}")
set(expect bin/flashkm include/flashkm.h ${LIBDIR}/libflashkm.so
    ${LIBDIR}/cmake/flashkm/flashkm-config.cmake ${LIBDIR}/cmake/flashkm/flashkm-targets.cmake
    ${LIBDIR}/cmake/flashkm/flashkm-config-version.cmake ${LIBDIR}/pkgconfig/flashkm.pc)
if(HAVE_FAISS)
  list(APPEND expect include/flashkm_faiss.h include/flashkm/clustering.h
       ${LIBDIR}/libflashkm_faiss.so)
endif()
foreach(f IN LISTS expect)
  if(NOT EXISTS "${prefix}/${f}")
    message(FATAL_ERROR "FAILED: ${f} is not installed")
  endif()
endforeach()

# The installed command runs from its own RPATH.
run("installed flashkm --version" "${prefix}/bin/flashkm" --version)

# find_package(flashkm) with namespaced targets.
run("configure consumer" ${CMAKE_COMMAND} -S "${SRC}" -B "${WORK}/consumer"
    -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_BUILD_TYPE=Release)
run("build consumer" ${CMAKE_COMMAND} --build "${WORK}/consumer")
run("run consumer" "${WORK}/consumer/consumer")
if(HAVE_FAISS)
  run("run consumer_faiss" "${WORK}/consumer/consumer_faiss")
  run("run consumer_clustering" "${WORK}/consumer/consumer_clustering")
endif()

# pkg-config.
find_program(PKG_CONFIG pkg-config)
find_program(CC NAMES cc gcc)
if(PKG_CONFIG AND CC)
  set(ENV{PKG_CONFIG_PATH} "${prefix}/${LIBDIR}/pkgconfig")
  run("pkg-config" ${PKG_CONFIG} --cflags --libs flashkm)
  string(STRIP "${out}" flags)
  separate_arguments(flags UNIX_COMMAND "${flags}")
  run("cc with pkg-config flags" ${CC} "${SRC}/consumer.c" -o "${WORK}/consumer_pc" ${flags}
      "-Wl,-rpath,${prefix}/${LIBDIR}")
  run("run pkg-config consumer" "${WORK}/consumer_pc")
else()
  message(STATUS "pkg-config or cc missing: pkg-config check not run")
endif()

# The Python package finds the library in the prefix by itself.
if(PYDIR AND PYTHON)
  execute_process(COMMAND ${PYTHON} -c "import numpy" RESULT_VARIABLE no_numpy
                  OUTPUT_QUIET ERROR_QUIET)
  if(no_numpy)
    message(STATUS "${PYTHON} has no numpy: Python check not run")
  else()
    unset(ENV{FLASHKM_LIBRARY})
    set(ENV{PYTHONPATH} "${prefix}/${PYDIR}")
    run("installed Python package" ${PYTHON} -c "
import numpy as np, flashkm
path = flashkm.library_path()
assert path.startswith('${prefix}/'), path
x = np.array([[0, 0], [0, 1], [1, 0], [1, 1], [10, 10], [10, 11], [11, 10], [11, 11]], 'float32')
km = flashkm.Kmeans(2, 2, min_points_per_centroid=1, backend='cpu')
km.train(x)
assert sorted(map(tuple, km.centroids.tolist())) == [(0.5, 0.5), (10.5, 10.5)], km.centroids
print('python ok:', path)
")
  endif()
endif()

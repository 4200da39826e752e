# FAISS 1.7.3's headers (Debian 12's libfaiss-dev) use uint8_t and friends
# without including <cstdint>; GCC 12's <string> pulls it in, GCC 13's
# standard library no longer does, and the bridge then fails to compile in
# FAISS's own headers. fkm_faiss_headers_compile(target) compiles the
# headers the bridge includes once; where that fails, every C++ file that
# links `target` gets <cstdint> first (-include cstdint), and the
# configure step says so.
include(CheckCXXSourceCompiles)

function(fkm_faiss_headers_compile target)
  get_target_property(inc ${target} INTERFACE_INCLUDE_DIRECTORIES)
  set(headers Index.h IndexFlat.h IndexIVF.h IndexIVFFlat.h IndexIVFPQ.h IndexPQ.h
      IndexPreTransform.h IndexScalarQuantizer.h Clustering.h VectorTransform.h
      index_factory.h index_io.h impl/ProductQuantizer.h impl/PolysemousTraining.h
      impl/AuxIndexStructures.h impl/io.h utils/distances.h utils/random.h utils/utils.h)
  set(src "")
  foreach(h IN LISTS headers)
    string(APPEND src "#include <faiss/${h}>\n")
  endforeach()
  string(APPEND src "int main() { return 0; }\n")
  set(CMAKE_REQUIRED_INCLUDES ${inc})
  set(CMAKE_REQUIRED_QUIET ON)
  check_cxx_source_compiles("${src}" FLASHKM_FAISS_HEADERS_COMPILE)
  if(NOT FLASHKM_FAISS_HEADERS_COMPILE)
    set(CMAKE_REQUIRED_FLAGS "-include cstdint")
    check_cxx_source_compiles("${src}" FLASHKM_FAISS_HEADERS_COMPILE_WITH_CSTDINT)
    if(FLASHKM_FAISS_HEADERS_COMPILE_WITH_CSTDINT)
      set_property(TARGET ${target} APPEND PROPERTY INTERFACE_COMPILE_OPTIONS
                   "$<$<COMPILE_LANGUAGE:CXX>:SHELL:-include cstdint>")
      message(STATUS "FAISS's headers lack <cstdint> for this compiler: "
                     "C++ files that include them get -include cstdint")
    else()
      message(WARNING "FAISS's headers (${inc}) do not compile on their own with this "
                      "compiler, with or without <cstdint> first: the FAISS bridge may not build")
    endif()
  endif()
endfunction()

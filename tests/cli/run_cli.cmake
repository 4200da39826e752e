# Runs the flashkm command once or more in a fresh work directory and checks
# what a user would see. cmake -P run_cli.cmake with:
#   CLI       path of the flashkm executable
#   FIX       fixture directory ("@F@" in arguments is replaced by it)
#   WORK      work directory (emptied first; outputs are relative to it)
#   RUN1..3   commands, arguments separated by "|"; each must exit with RC
#   RC        expected exit code of every command
#   STDERR    regex the last command's stderr must match (optional)
#   STDOUT    regex the last command's stdout must match (optional)
#   ABSENT    "|"-separated files that must not exist afterwards
#   SAME      "|"-separated "a=b" pairs of files with identical contents
#   SIZES     "|"-separated "file=bytes"
#   MATCHES   "|"-separated "file=regex" on a text file's contents
# After every run, no temporary file (*.tmp-*) may be left behind.
cmake_minimum_required(VERSION 3.25)

function(fail msg)
  message(FATAL_ERROR "FAILED: ${msg}\n--- stdout ---\n${out}\n--- stderr ---\n${err}")
endfunction()

file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")

foreach(i 1 2 3)
  if(NOT DEFINED RUN${i})
    continue()
  endif()
  string(REPLACE "@F@" "${FIX}" args "${RUN${i}}")
  string(REPLACE "|" ";" args "${args}")
  execute_process(COMMAND "${CLI}" ${args}
    WORKING_DIRECTORY "${WORK}"
    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err
    TIMEOUT 300)
  message(STATUS "flashkm ${args}: exit ${rc}\n${out}${err}")
  if(NOT "${rc}" STREQUAL "${RC}")
    fail("flashkm ${args}: exit code ${rc}, expected ${RC}")
  endif()
  file(GLOB leftovers "${WORK}/*.tmp-*")
  if(leftovers)
    fail("temporary files left behind: ${leftovers}")
  endif()
endforeach()

if(DEFINED STDERR AND NOT err MATCHES "${STDERR}")
  fail("stderr does not match '${STDERR}'")
endif()
if(DEFINED STDOUT AND NOT out MATCHES "${STDOUT}")
  fail("stdout does not match '${STDOUT}'")
endif()
if(DEFINED STDERR AND RC STREQUAL "1")
  # An error is one line naming the problem.
  string(REGEX MATCHALL "flashkm: error:" lines "${err}")
  list(LENGTH lines nerr)
  if(NOT nerr EQUAL 1)
    fail("expected exactly one error line, got ${nerr}")
  endif()
endif()

string(REPLACE "|" ";" absent "${ABSENT}")
foreach(f IN LISTS absent)
  if(EXISTS "${WORK}/${f}")
    fail("${f} exists but must not (nothing half-written on failure)")
  endif()
endforeach()

string(REPLACE "|" ";" same "${SAME}")
foreach(pair IN LISTS same)
  string(REPLACE "=" ";" ab "${pair}")
  list(GET ab 0 a)
  list(GET ab 1 b)
  if(NOT EXISTS "${WORK}/${a}" OR NOT EXISTS "${WORK}/${b}")
    fail("${a} or ${b} missing")
  endif()
  file(SHA256 "${WORK}/${a}" ha)
  file(SHA256 "${WORK}/${b}" hb)
  if(NOT ha STREQUAL hb)
    fail("${a} and ${b} differ")
  endif()
endforeach()

string(REPLACE "|" ";" sizes "${SIZES}")
foreach(pair IN LISTS sizes)
  string(REPLACE "=" ";" fs "${pair}")
  list(GET fs 0 f)
  list(GET fs 1 want)
  if(NOT EXISTS "${WORK}/${f}")
    fail("${f} missing")
  endif()
  file(SIZE "${WORK}/${f}" got)
  if(NOT got EQUAL want)
    fail("${f}: ${got} bytes, expected ${want}")
  endif()
endforeach()

string(REPLACE "|" ";" matches "${MATCHES}")
foreach(pair IN LISTS matches)
  string(FIND "${pair}" "=" eq)
  string(SUBSTRING "${pair}" 0 ${eq} f)
  math(EXPR eq1 "${eq} + 1")
  string(SUBSTRING "${pair}" ${eq1} -1 re)
  if(NOT EXISTS "${WORK}/${f}")
    fail("${f} missing")
  endif()
  file(READ "${WORK}/${f}" text)
  if(NOT text MATCHES "${re}")
    fail("${f} does not match '${re}'")
  endif()
endforeach()

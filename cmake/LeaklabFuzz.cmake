# Fuzzing (fuzz/, docs/reliability.md): the libFuzzer targets, built with
# clang into BUILD/fuzz by a sub-build of fuzz/CMakeLists.txt (the main build
# uses gcc, and libFuzzer is clang's), and a CTest smoke run of every target:
#
#   fuzz.gateway_decoder   rw_gateway's frame decoder, split every which way
#   fuzz.options           every scenario's command line (common/options.c)
#   fuzz.expected          the expected files' expressions (Python, no build)
#
# Each smoke run replays the target's corpus (fuzz/TARGET/corpus: the seeds and
# every input that once found a bug) and then a fixed number of mutated inputs
# with a fixed seed: the same few seconds on every run, so a smoke test that
# fails is a finding, never bad luck. Longer runs: ./leaklab fuzz TARGET --seconds N.
# Without clang or its libFuzzer runtime (Debian: clang, libclang-rt-dev) the
# sub-build is left out and the two C smoke tests exit 77 saying what to install.
if(LEAKLAB_SANITIZER)
  return() # the sanitizer sub-builds build scenarios only
endif()

set(LEAKLAB_FUZZ_TARGETS gateway_decoder options)
set(LEAKLAB_FUZZ_SMOKE_RUNS 100000 CACHE STRING "Mutated inputs per libFuzzer smoke test (fuzz.*)")
set(LEAKLAB_FUZZ_SMOKE_RUNS_PYTHON 500 CACHE STRING "Mutated inputs of the fuzz.expected smoke test")

find_program(LEAKLAB_FUZZ_CLANG NAMES clang clang-19 clang-16 clang-14)
set(_leaklab_libfuzzer OFF)
if(LEAKLAB_FUZZ_CLANG)
  # Does this clang link -fsanitize=fuzzer? (Debian ships the runtime apart,
  # in libclang-rt-N-dev.) Asked at every configure: a second or so.
  set(_probe ${PROJECT_BINARY_DIR}/CMakeFiles/leaklab_fuzz_probe)
  file(MAKE_DIRECTORY ${_probe})
  file(WRITE ${_probe}/probe.c
       "#include <stddef.h>\n#include <stdint.h>\n"
       "int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }\n")
  execute_process(COMMAND ${LEAKLAB_FUZZ_CLANG} -fsanitize=fuzzer,address,undefined probe.c -o probe
                  WORKING_DIRECTORY ${_probe} RESULT_VARIABLE _rc OUTPUT_QUIET ERROR_QUIET)
  if(_rc EQUAL 0)
    set(_leaklab_libfuzzer ON)
  endif()
endif()

if(_leaklab_libfuzzer)
  include(ExternalProject)
  ExternalProject_Add(fuzz_targets
    SOURCE_DIR ${PROJECT_SOURCE_DIR}/fuzz
    BINARY_DIR ${PROJECT_BINARY_DIR}/fuzz
    CMAKE_ARGS -DCMAKE_C_COMPILER=${LEAKLAB_FUZZ_CLANG}
               -DCMAKE_BUILD_TYPE=${CMAKE_BUILD_TYPE}
               -DLEAKLAB_SOURCE_DIR=${PROJECT_SOURCE_DIR}
               -DLEAKLAB_WERROR=${LEAKLAB_WERROR}
    INSTALL_COMMAND ""
    BUILD_ALWAYS ON)
  message(STATUS "leaklab: fuzz targets with ${LEAKLAB_FUZZ_CLANG}: ${LEAKLAB_FUZZ_TARGETS}")
else()
  message(STATUS "leaklab: no clang with libFuzzer (clang, libclang-rt-dev): no fuzz targets "
                 "(their smoke tests will be skipped)")
endif()

if(BUILD_TESTING)
  foreach(target IN LISTS LEAKLAB_FUZZ_TARGETS)
    add_test(NAME fuzz.${target}
      COMMAND ${Python3_EXECUTABLE} ${PROJECT_SOURCE_DIR}/scripts/fuzz.py ${target} --smoke
              --runs ${LEAKLAB_FUZZ_SMOKE_RUNS} --build-dir ${PROJECT_BINARY_DIR})
  endforeach()
  add_test(NAME fuzz.expected
    COMMAND ${Python3_EXECUTABLE} ${PROJECT_SOURCE_DIR}/scripts/fuzz.py expected --smoke
            --runs ${LEAKLAB_FUZZ_SMOKE_RUNS_PYTHON} --build-dir ${PROJECT_BINARY_DIR})
  foreach(target IN LISTS LEAKLAB_FUZZ_TARGETS ITEMS expected)
    set_tests_properties(fuzz.${target} PROPERTIES LABELS "quick;fuzz" TIMEOUT 300 SKIP_RETURN_CODE 77)
  endforeach()
endif()

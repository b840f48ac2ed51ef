# Sanitizer builds of every scenario: NAME-lsan (-fsanitize=leak), NAME-asan
# (-fsanitize=address, leak detection on) and NAME-tsan (-fsanitize=thread),
# compiled with clang and its compiler-rt runtimes (Debian's libclang-rt-dev).
#
# Each is a sub-build of this same project (ExternalProject), configured with
# LEAKLAB_SANITIZER set: the scenario helper then builds one glibc binary per
# scenario into the main build's scenarios/ folder, with the same sources and
# flags as every other build. Without clang the sub-builds are left out and
# the sanitizer tests exit 77 saying so.
set(_leaklab_sanitizer_suffixes leak=lsan address=asan thread=tsan)

if(LEAKLAB_SANITIZER)
  foreach(pair IN LISTS _leaklab_sanitizer_suffixes)
    string(REPLACE "=" ";" pair ${pair})
    list(GET pair 0 sanitizer)
    list(GET pair 1 suffix)
    if(sanitizer STREQUAL LEAKLAB_SANITIZER)
      set(LEAKLAB_SANITIZER_SUFFIX ${suffix})
    endif()
  endforeach()
  if(NOT LEAKLAB_SANITIZER_SUFFIX OR NOT LEAKLAB_OUTPUT_DIR)
    message(FATAL_ERROR "LEAKLAB_SANITIZER must be leak, address or thread, with LEAKLAB_OUTPUT_DIR set")
  endif()
  add_compile_options(-fsanitize=${LEAKLAB_SANITIZER} -O1)
  add_link_options(-fsanitize=${LEAKLAB_SANITIZER})
  return()
endif()

find_program(LEAKLAB_CLANG NAMES clang clang-14)
if(NOT LEAKLAB_CLANG)
  message(STATUS "leaklab: clang not found: no sanitizer builds (their tests will be skipped)")
  return()
endif()

include(ExternalProject)
set(previous "")
foreach(pair IN LISTS _leaklab_sanitizer_suffixes)
  string(REPLACE "=" ";" pair ${pair})
  list(GET pair 0 sanitizer)
  # One after the other: three configures at once on two cores gain nothing.
  ExternalProject_Add(sanitizer_${sanitizer}
    DEPENDS ${previous}
    SOURCE_DIR ${PROJECT_SOURCE_DIR}
    BINARY_DIR ${PROJECT_BINARY_DIR}/sanitizers/${sanitizer}
    CMAKE_ARGS -DCMAKE_C_COMPILER=${LEAKLAB_CLANG}
               -DCMAKE_BUILD_TYPE=${CMAKE_BUILD_TYPE}
               -DLEAKLAB_SANITIZER=${sanitizer}
               -DLEAKLAB_OUTPUT_DIR=${PROJECT_BINARY_DIR}/scenarios
               -DLEAKLAB_WERROR=${LEAKLAB_WERROR}
               -DBUILD_TESTING=OFF
    INSTALL_COMMAND ""
    BUILD_ALWAYS ON)
  set(previous sanitizer_${sanitizer})
endforeach()
message(STATUS "leaklab: sanitizer builds with ${LEAKLAB_CLANG}: lsan asan tsan")

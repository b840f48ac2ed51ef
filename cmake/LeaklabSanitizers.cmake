# Sanitizer builds of every scenario: NAME-lsan (-fsanitize=leak), NAME-asan
# (-fsanitize=address, leak detection on) and NAME-tsan (-fsanitize=thread),
# compiled with clang and its compiler-rt runtimes (Debian's libclang-rt-dev).
#
# Each is a sub-build of this same project (ExternalProject), configured with
# LEAKLAB_SANITIZER set: the scenario helper then builds one glibc binary per
# scenario into the main build's scenarios/ folder, with the same sources and
# flags as every other build. Without clang the sub-builds are left out and
# the sanitizer tests exit 77 saying so.
#
# Tool releases (docs/baselines.md). The sanitizers are part of the compiler,
# so a release of LeakSanitizer is a compiler: clang-14, clang-16, clang-19
# (compiler-rt) or gcc-12 (GCC's own libsanitizer: liblsan0, libasan8,
# libtsan2). The default release is `clang` (Debian 12: clang 14); its
# binaries keep their plain names, NAME-lsan, and also answer to
# NAME-lsan@clang-14 (a symlink), so `--tool lsan` and `--tool lsan@clang-14`
# run the same binary. Other releases are built only when asked for, because
# each one is three more sub-builds (a configure and a build of the harness
# and every scenario each):
#
#   -DLEAKLAB_TOOL_RELEASES=all                  every release installed here
#   -DLEAKLAB_TOOL_RELEASES="clang-19;gcc-12"    these releases, every sanitizer
#   -DLEAKLAB_TOOL_RELEASES="lsan@clang-19"      one sanitizer of one release
#
# `scripts/install-deps --tool-releases` installs clang-16, clang-19 and their
# runtimes. Their binaries are NAME-lsan@clang-19 and so on, and their CTest
# tests <scenario>.<variant>.lsan@clang-19[.canary] (label "releases"); a
# release asked for but not installed keeps its tests, which exit 77 saying
# what to install. What was found and decided is written to
# BUILD/sanitizers/releases.json, which the scripts read (`leaklab list --tools`).
set(_leaklab_sanitizer_suffixes leak=lsan address=asan thread=tsan)
set(LEAKLAB_TOOL_RELEASES "" CACHE STRING
    "Sanitizer releases to build besides the default clang: all, or a list of RELEASE / TOOL@RELEASE (clang-19;gcc-12;lsan@clang-16)")
set(LEAKLAB_SANITIZER_RELEASE "" CACHE STRING "Set by the sanitizer sub-builds only: the release, e.g. clang-19")
option(LEAKLAB_SANITIZER_DEFAULT "Set by the sanitizer sub-builds only: ON in the default release's" OFF)
# Releases `all` looks for (the Debian names of the compilers).
set(_leaklab_release_candidates
    clang-13 clang-14 clang-15 clang-16 clang-17 clang-18 clang-19 clang-20 clang-21
    gcc-10 gcc-11 gcc-12 gcc-13 gcc-14 gcc-15)

# In a sanitizer sub-build, leaklab_add_scenario() calls this instead of
# building the allocator twins: one binary, NAME-<lsan|asan|tsan>, named for
# its release (NAME-lsan@clang-19), or for the default release the plain name
# plus the NAME-lsan@RELEASE symlink.
function(leaklab_sanitizer_executable name)
  set(target ${name}-${LEAKLAB_SANITIZER_SUFFIX})
  add_executable(${target} ${ARGN})
  target_link_libraries(${target} PRIVATE leaklab_glibc)
  set_target_properties(${target} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${LEAKLAB_OUTPUT_DIR})
  if(LEAKLAB_SANITIZER_RELEASE AND LEAKLAB_SANITIZER_DEFAULT)
    add_custom_command(TARGET ${target} POST_BUILD
      COMMAND ${CMAKE_COMMAND} -E create_symlink ${target} ${target}@${LEAKLAB_SANITIZER_RELEASE}
      WORKING_DIRECTORY ${LEAKLAB_OUTPUT_DIR} VERBATIM)
  elseif(LEAKLAB_SANITIZER_RELEASE)
    set_target_properties(${target} PROPERTIES OUTPUT_NAME ${target}@${LEAKLAB_SANITIZER_RELEASE})
  endif()
endfunction()

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

# _leaklab_release_of(COMPILER OUT_RELEASE OUT_VERSION): clang-19 and
# "Debian clang version 19.1.7 (3~deb12u1)" for /usr/bin/clang-19 (or for
# /usr/bin/clang, whichever clang it is); gcc-12 and the first line of
# `gcc-12 --version` for GCC.
function(_leaklab_release_of compiler out_release out_version)
  execute_process(COMMAND ${compiler} --version OUTPUT_VARIABLE text ERROR_QUIET RESULT_VARIABLE failed)
  string(REGEX REPLACE "\n.*" "" first "${text}")
  set(release "")
  if(NOT failed AND first MATCHES "clang version ([0-9]+)")
    set(release clang-${CMAKE_MATCH_1})
  elseif(NOT failed)
    execute_process(COMMAND ${compiler} -dumpversion OUTPUT_VARIABLE major ERROR_QUIET OUTPUT_STRIP_TRAILING_WHITESPACE)
    if(major MATCHES "^([0-9]+)")
      set(release gcc-${CMAKE_MATCH_1})
    endif()
  endif()
  set(${out_release} "${release}" PARENT_SCOPE)
  set(${out_version} "${first}" PARENT_SCOPE)
endfunction()

# _leaklab_runtime_missing(COMPILER SANITIZER OUT): empty when COMPILER links
# a program with -fsanitize=SANITIZER, else its error's first line. (A
# compiler without its runtime is common: clang-19 without libclang-rt-19-dev.)
function(_leaklab_runtime_missing compiler sanitizer out)
  set(dir ${PROJECT_BINARY_DIR}/sanitizers/probe)
  file(MAKE_DIRECTORY ${dir})
  file(WRITE ${dir}/probe.c "int main(void) { return 0; }\n")
  string(MAKE_C_IDENTIFIER "${compiler}-${sanitizer}" stem)
  execute_process(COMMAND ${compiler} -fsanitize=${sanitizer} ${dir}/probe.c -o ${dir}/${stem}
    RESULT_VARIABLE failed OUTPUT_QUIET ERROR_VARIABLE error)
  set(why "")
  if(failed)
    string(REGEX MATCH "[^\n]*(cannot find|No such file|unsupported)[^\n]*" why "${error}")
    if(NOT why)
      string(REGEX REPLACE "\n.*" "" why "${error}")
    endif()
    string(STRIP "${why}" why)
    if(NOT why)
      set(why "${compiler} -fsanitize=${sanitizer} failed")
    endif()
  endif()
  set(${out} "${why}" PARENT_SCOPE)
endfunction()

find_program(LEAKLAB_CLANG NAMES clang clang-14)
set(_leaklab_releases_json "{}")
string(JSON _leaklab_releases_json SET "${_leaklab_releases_json}" requested "\"${LEAKLAB_TOOL_RELEASES}\"")
string(JSON _leaklab_releases_json SET "${_leaklab_releases_json}" releases "{}")
set(LEAKLAB_RELEASE_TOOLS "") # TOOL@RELEASE columns asked for, besides the default release (their tests)

if(NOT LEAKLAB_CLANG)
  message(STATUS "leaklab: clang not found: no sanitizer builds (their tests will be skipped)")
  set(default_release "")
else()
  _leaklab_release_of(${LEAKLAB_CLANG} default_release default_version)
  string(JSON _leaklab_releases_json SET "${_leaklab_releases_json}" default_release "\"${default_release}\"")
endif()

# What was asked for: {release: [tools]}.
set(asked_releases "")
set(asked_all OFF)
foreach(item IN LISTS LEAKLAB_TOOL_RELEASES)
  string(REPLACE "," ";" item "${item}")
  foreach(one IN LISTS item)
    if(one STREQUAL "all" OR one STREQUAL "ON")
      set(asked_all ON)
    elseif(one MATCHES "^((lsan|asan|tsan)@)?((clang|gcc)-[0-9]+)$")
      set(release ${CMAKE_MATCH_3})
      list(APPEND asked_releases ${release})
      if(CMAKE_MATCH_2)
        list(APPEND asked_tools_${release} ${CMAKE_MATCH_2})
      else()
        list(APPEND asked_tools_${release} lsan asan tsan)
      endif()
    elseif(one)
      message(FATAL_ERROR "LEAKLAB_TOOL_RELEASES: '${one}' is not a release; accepted: all, or a list of "
                          "RELEASE or TOOL@RELEASE (clang-19, gcc-12, lsan@clang-16; TOOL: lsan, asan, tsan)")
    endif()
  endforeach()
endforeach()
if(asked_all)
  foreach(release IN LISTS _leaklab_release_candidates)
    find_program(_found_${release} NAMES ${release} NO_CACHE)
    if(_found_${release})
      list(APPEND asked_releases ${release})
      list(APPEND asked_tools_${release} lsan asan tsan)
    endif()
  endforeach()
endif()
list(REMOVE_DUPLICATES asked_releases)

# Every release known here: the default, the ones installed, the ones asked for.
set(known_releases ${default_release})
foreach(release IN LISTS _leaklab_release_candidates asked_releases)
  find_program(_found_${release} NAMES ${release} NO_CACHE)
  if(_found_${release} OR release IN_LIST asked_releases)
    list(APPEND known_releases ${release})
  endif()
endforeach()
list(REMOVE_DUPLICATES known_releases)

include(ExternalProject)
set(previous "")
set(extra_builds "")
foreach(release IN LISTS known_releases)
  set(is_default OFF)
  set(is_default_json false)
  if(release STREQUAL default_release)
    set(is_default ON)
    set(is_default_json true)
    set(compiler ${LEAKLAB_CLANG})
    set(version "${default_version}")
  else()
    unset(compiler)
    find_program(compiler NAMES ${release} NO_CACHE)
    set(version "")
    if(compiler)
      _leaklab_release_of(${compiler} ignored version)
    endif()
  endif()
  set(entry "{}")
  string(JSON entry SET "${entry}" compiler "\"${compiler}\"")
  string(JSON entry SET "${entry}" version "\"${version}\"")
  string(JSON entry SET "${entry}" default ${is_default_json})
  string(JSON entry SET "${entry}" tools "{}")
  if(asked_tools_${release})
    list(REMOVE_DUPLICATES asked_tools_${release})
  endif()
  foreach(pair IN LISTS _leaklab_sanitizer_suffixes)
    string(REPLACE "=" ";" pair ${pair})
    list(GET pair 0 sanitizer)
    list(GET pair 1 tool)
    set(asked OFF)
    if(tool IN_LIST asked_tools_${release})
      set(asked ON)
      if(NOT is_default)
        list(APPEND LEAKLAB_RELEASE_TOOLS ${tool}@${release})
      endif()
    endif()
    set(why "")
    if(is_default)
      set(status built)
    elseif(NOT compiler)
      set(status "not installed")
      set(why "${release} is not installed (scripts/install-deps --tool-releases, then reconfigure)")
    elseif(NOT asked)
      set(status "not requested")
      set(why "${release} is installed but its sub-builds were not asked for: reconfigure with -DLEAKLAB_TOOL_RELEASES=${release} (or TOOL@${release} for one sanitizer, or all)")
    else()
      _leaklab_runtime_missing(${compiler} ${sanitizer} runtime_error)
      if(runtime_error)
        set(status "no runtime")
        set(why "${compiler} cannot link -fsanitize=${sanitizer} (${runtime_error}): install its runtime (scripts/install-deps --tool-releases), then reconfigure")
      else()
        set(status built)
      endif()
    endif()
    string(JSON entry SET "${entry}" tools ${tool} "{}")
    string(JSON entry SET "${entry}" tools ${tool} status "\"${status}\"")
    if(why)
      string(REPLACE "\\" "\\\\" why "${why}")
      string(REPLACE "\"" "\\\"" why "${why}")
      string(JSON entry SET "${entry}" tools ${tool} why "\"${why}\"")
    endif()
    if(NOT status STREQUAL "built")
      continue()
    endif()
    if(is_default)
      set(binary_dir ${PROJECT_BINARY_DIR}/sanitizers/${sanitizer})
      set(target sanitizer_${sanitizer})
    else()
      set(binary_dir ${PROJECT_BINARY_DIR}/sanitizers/${release}/${sanitizer})
      string(MAKE_C_IDENTIFIER "sanitizer_${release}_${sanitizer}" target)
      list(APPEND extra_builds ${tool}@${release})
    endif()
    # One after the other: configures side by side on two cores gain nothing.
    ExternalProject_Add(${target}
      DEPENDS ${previous}
      SOURCE_DIR ${PROJECT_SOURCE_DIR}
      BINARY_DIR ${binary_dir}
      CMAKE_ARGS -DCMAKE_C_COMPILER=${compiler}
                 -DCMAKE_BUILD_TYPE=${CMAKE_BUILD_TYPE}
                 -DLEAKLAB_SANITIZER=${sanitizer}
                 -DLEAKLAB_SANITIZER_RELEASE=${release}
                 -DLEAKLAB_SANITIZER_DEFAULT=${is_default}
                 -DLEAKLAB_OUTPUT_DIR=${PROJECT_BINARY_DIR}/scenarios
                 -DLEAKLAB_WERROR=${LEAKLAB_WERROR}
                 -DBUILD_TESTING=OFF
      INSTALL_COMMAND ""
      BUILD_ALWAYS ON)
    set(previous ${target})
  endforeach()
  string(JSON _leaklab_releases_json SET "${_leaklab_releases_json}" releases ${release} "${entry}")
endforeach()
file(MAKE_DIRECTORY ${PROJECT_BINARY_DIR}/sanitizers)
file(WRITE ${PROJECT_BINARY_DIR}/sanitizers/releases.json "${_leaklab_releases_json}\n")

if(LEAKLAB_CLANG)
  message(STATUS "leaklab: sanitizer builds with ${LEAKLAB_CLANG} (${default_release}): lsan asan tsan")
endif()
if(extra_builds)
  message(STATUS "leaklab: sanitizer release builds: ${extra_builds}")
endif()
foreach(tool IN LISTS LEAKLAB_RELEASE_TOOLS)
  if(NOT tool IN_LIST extra_builds)
    message(STATUS "leaklab: ${tool} asked for but not built (its tests will be skipped; see sanitizers/releases.json)")
  endif()
endforeach()

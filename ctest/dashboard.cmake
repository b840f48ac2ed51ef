# The leaklab dashboard: configure, build, test, and submit to a CDash server
# (a nightly cron job, or a CI machine). Run with ctest -S; set variables with
# -D before -S:
#
#   ctest -DLEAKLAB_CDASH_URL="https://cdash.example.org/submit.php?project=leaklab" \
#         -DLEAKLAB_DASHBOARD_MODEL=Nightly -S ctest/dashboard.cmake -V
#
#   LEAKLAB_CDASH_URL           CDash's submit URL (or $LEAKLAB_CDASH_URL). Without
#                               one nothing is submitted: the script runs the other
#                               steps and says so. There is no default server.
#   LEAKLAB_DASHBOARD_MODEL     Experimental (default), Nightly or Continuous
#   LEAKLAB_DASHBOARD_BUILD_DIR the build directory (default: build-dashboard/ in
#                               the source tree); configured if need be
#   LEAKLAB_DASHBOARD_STEPS     any of configure;build;test;submit (default: all)
#   LEAKLAB_DASHBOARD_LABELS    only tests whose label matches (ctest -L), e.g. quick
#   LEAKLAB_DASHBOARD_INCLUDE   only tests whose name matches (ctest -R)
#   LEAKLAB_DASHBOARD_CONFIGURE_OPTIONS  more cmake options, e.g.
#                               -DLEAKLAB_TOOL_RELEASES=all (release columns)
#   LEAKLAB_DASHBOARD_PARALLEL  ctest -j (default 2; seed-scale tests run serially anyway)
#   LEAKLAB_DASHBOARD_SUBMIT_RETRIES  retries of a failed submission, 5 s apart (default 2)
#   CTEST_SITE, CTEST_BUILD_NAME  how CDash names the machine and the build
#                               (default: the host name; debian-<arch>-<model>)
#   $LEAKLAB_CDASH_TOKEN        a CDash project's authentication token, if it
#                               requires one (sent as "Authorization: Bearer ...")
#
# Every check test prints its key figures as CTest measurements (threads,
# RSS, heap in use, what the tool reported, the verdict: scripts/views/measurements.py),
# so Test.xml carries them and CDash plots them build after build.
# Exit status: non-zero when a step failed (configure, build, a test, or the
# submission), after submitting what there is.
cmake_minimum_required(VERSION 3.25)

get_filename_component(CTEST_SOURCE_DIRECTORY "${CMAKE_CURRENT_LIST_DIR}/.." ABSOLUTE)
if(NOT LEAKLAB_DASHBOARD_BUILD_DIR)
  set(LEAKLAB_DASHBOARD_BUILD_DIR "${CTEST_SOURCE_DIRECTORY}/build-dashboard")
endif()
get_filename_component(CTEST_BINARY_DIRECTORY "${LEAKLAB_DASHBOARD_BUILD_DIR}" ABSOLUTE)
if(NOT LEAKLAB_DASHBOARD_MODEL)
  set(LEAKLAB_DASHBOARD_MODEL Experimental)
endif()
if(NOT LEAKLAB_DASHBOARD_MODEL MATCHES "^(Experimental|Nightly|Continuous)$")
  message(FATAL_ERROR "LEAKLAB_DASHBOARD_MODEL=${LEAKLAB_DASHBOARD_MODEL}: accepted: Experimental, Nightly, Continuous")
endif()
if(NOT DEFINED LEAKLAB_DASHBOARD_STEPS)
  set(LEAKLAB_DASHBOARD_STEPS configure build test submit)
endif()
foreach(step IN LISTS LEAKLAB_DASHBOARD_STEPS)
  if(NOT step MATCHES "^(configure|build|test|submit)$")
    message(FATAL_ERROR "LEAKLAB_DASHBOARD_STEPS: unknown step '${step}'; accepted: configure, build, test, submit")
  endif()
endforeach()
if(NOT LEAKLAB_DASHBOARD_PARALLEL)
  set(LEAKLAB_DASHBOARD_PARALLEL 2)
endif()
if(NOT DEFINED LEAKLAB_DASHBOARD_SUBMIT_RETRIES)
  set(LEAKLAB_DASHBOARD_SUBMIT_RETRIES 2)
endif()

# CTestConfig.cmake: the project name, the nightly start time, and the submit
# URL, which it takes from LEAKLAB_CDASH_URL (set above with -D) or the environment.
include("${CTEST_SOURCE_DIRECTORY}/CTestConfig.cmake")

if(NOT CTEST_SITE)
  cmake_host_system_information(RESULT CTEST_SITE QUERY HOSTNAME)
endif()
if(NOT CTEST_BUILD_NAME)
  set(CTEST_BUILD_NAME "debian-${CMAKE_HOST_SYSTEM_PROCESSOR}-${LEAKLAB_DASHBOARD_MODEL}")
  string(TOLOWER "${CTEST_BUILD_NAME}" CTEST_BUILD_NAME)
endif()
set(CTEST_CMAKE_GENERATOR "Unix Makefiles")
set(CTEST_CONFIGURATION_TYPE RelWithDebInfo)
set(CTEST_BUILD_FLAGS -j2)

set(failed "")
ctest_start(${LEAKLAB_DASHBOARD_MODEL})
if("configure" IN_LIST LEAKLAB_DASHBOARD_STEPS)
  ctest_configure(OPTIONS "-DCMAKE_BUILD_TYPE=RelWithDebInfo;${LEAKLAB_DASHBOARD_CONFIGURE_OPTIONS}"
                  RETURN_VALUE rv)
  if(rv)
    list(APPEND failed configure)
  endif()
endif()
if("build" IN_LIST LEAKLAB_DASHBOARD_STEPS AND NOT failed)
  ctest_build(RETURN_VALUE rv NUMBER_ERRORS errors)
  if(rv OR errors)
    list(APPEND failed build)
  endif()
endif()
if("test" IN_LIST LEAKLAB_DASHBOARD_STEPS AND NOT failed)
  set(selection "")
  if(LEAKLAB_DASHBOARD_LABELS)
    list(APPEND selection INCLUDE_LABEL "${LEAKLAB_DASHBOARD_LABELS}")
  endif()
  if(LEAKLAB_DASHBOARD_INCLUDE)
    list(APPEND selection INCLUDE "${LEAKLAB_DASHBOARD_INCLUDE}")
  endif()
  ctest_test(PARALLEL_LEVEL ${LEAKLAB_DASHBOARD_PARALLEL} ${selection} RETURN_VALUE rv)
  if(rv)
    list(APPEND failed test)
  endif()
endif()
if("submit" IN_LIST LEAKLAB_DASHBOARD_STEPS)
  if(NOT CTEST_SUBMIT_URL)
    message(STATUS "leaklab dashboard: no LEAKLAB_CDASH_URL given: nothing submitted "
                   "(results are in ${CTEST_BINARY_DIRECTORY}/Testing)")
  else()
    # A CDash project that requires authentication takes a bearer token.
    set(headers "")
    if(NOT "$ENV{LEAKLAB_CDASH_TOKEN}" STREQUAL "")
      set(headers HTTPHEADER "Authorization: Bearer $ENV{LEAKLAB_CDASH_TOKEN}")
    endif()
    ctest_submit(RETRY_COUNT ${LEAKLAB_DASHBOARD_SUBMIT_RETRIES} RETRY_DELAY 5 ${headers}
                 RETURN_VALUE rv CAPTURE_CMAKE_ERROR submit_error
                 BUILD_ID build_id)
    if(rv OR submit_error EQUAL -1)
      list(APPEND failed submit)
    else()
      message(STATUS "leaklab dashboard: submitted (CDash build id: ${build_id})")
    endif()
  endif()
endif()
if(failed)
  message(FATAL_ERROR "leaklab dashboard: failed: ${failed} (see ${CTEST_BINARY_DIRECTORY}/Testing)")
endif()

# CDash: where `ctest -D Experimental` (or Nightly, Continuous) and the
# dashboard script (ctest -S ctest/dashboard.cmake) submit their results.
#
# There is no default server: results are submitted only to a URL the user
# gives, as a cache variable when configuring, or as an environment variable:
#
#   cmake -B build -DLEAKLAB_CDASH_URL="https://cdash.example.org/submit.php?project=leaklab"
#   ctest --test-dir build -D Experimental         # configure, build, test, submit
#
# Without one, every step but the submission runs, and the submission fails
# ("Problems when submitting via HTTP", after CTest's retries): nothing leaves
# the machine. ctest/dashboard.cmake says "nothing submitted" instead of
# trying. docs/baselines.md has the walk-through.
set(CTEST_PROJECT_NAME "leaklab")
set(CTEST_NIGHTLY_START_TIME "01:00:00 UTC")
if(LEAKLAB_CDASH_URL)
  set(CTEST_SUBMIT_URL "${LEAKLAB_CDASH_URL}")
elseif(NOT "$ENV{LEAKLAB_CDASH_URL}" STREQUAL "")
  set(CTEST_SUBMIT_URL "$ENV{LEAKLAB_CDASH_URL}")
endif()

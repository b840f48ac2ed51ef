# Finds the allocators a scenario can be built against. glibc malloc is
# always there; tcmalloc (gperftools, which also brings the heap profiler) and
# jemalloc are found with pkg-config and are optional: a scenario built
# without them has no <name>-tcmalloc / <name>-jemalloc binary, and the tests
# that need one exit 77 (skipped) saying so.
set(LEAKLAB_ALLOCATORS glibc)

# A sanitizer replaces malloc itself: its sub-build is glibc-only.
if(PkgConfig_FOUND AND NOT LEAKLAB_SANITIZER)
  pkg_check_modules(TCMALLOC IMPORTED_TARGET libtcmalloc)
  pkg_check_modules(JEMALLOC IMPORTED_TARGET jemalloc)
endif()
if(TCMALLOC_FOUND)
  list(APPEND LEAKLAB_ALLOCATORS tcmalloc)
endif()
if(JEMALLOC_FOUND)
  list(APPEND LEAKLAB_ALLOCATORS jemalloc)
endif()
message(STATUS "leaklab: allocators found: ${LEAKLAB_ALLOCATORS}")

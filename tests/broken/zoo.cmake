# Zoo kernels with their fix taken out. Each kernel marks its fix in the
# fixed code: LL_FIX(statement) and LL_FIX_VALUE(fixed, unfixed) (leaklab.h).
# Built with -DLL_BREAK_FIX, the same source runs its fixed variant without
# the fix (the statements never run, the values are the unfixed ones), into
# broken/scenarios/ beside the broken blocked_workers. The fixed variant's
# [truth] rows must then turn red: the threads the fix let finish are back,
# still blocked (the thread count), or, for the join family, the thread the
# fix joined is left ended and unjoined (counters.unjoined_threads: a thread
# that ended is no longer counted among the threads). One kernel per
# primitive family: KERNEL|FAMILY.
set(LEAKLAB_BROKEN_ZOO "ncast_leak|channel" "cockroach10214|lock" "cockroach1462|counter"
    "unjoined_thread|join" "pipe_reader|pipe" "etcd5509|rwlock"
    "syncthing4829|go_rwmutex"
    "cockroach16167|atomic_value" # upstream's fix (an atomic read, no second RLock), not a convenient one
    # C-project fixes: a robust mutex with EOWNERDEAD handled, an abort flag
    # instead of pthread_cancel, a pool worker's admission test
    "boost_owner_dead|robust" "asterisk_cancel|cancel_flag" "htslib_flush|pool_admission" "openssl_once|once_flag")
foreach(pair IN LISTS LEAKLAB_BROKEN_ZOO)
  string(REPLACE "|" ";" pair "${pair}")
  list(GET pair 0 kernel)
  list(GET pair 1 family)
  set(red_row "truth: threads == 1 + truth.leaked_threads")
  if(family STREQUAL "join")
    set(red_row "truth: counters.unjoined_threads == truth.unjoined_threads")
  endif()
  add_executable(broken_zoo_${kernel} ${PROJECT_SOURCE_DIR}/scenarios/zoo/${kernel}.c)
  target_compile_definitions(broken_zoo_${kernel} PRIVATE LL_BREAK_FIX)
  target_link_libraries(broken_zoo_${kernel} PRIVATE leaklab_glibc)
  set_target_properties(broken_zoo_${kernel} PROPERTIES OUTPUT_NAME ${kernel}
    RUNTIME_OUTPUT_DIRECTORY ${broken_dir}/scenarios)
  add_test(NAME broken.zoo.${kernel}.fixed.native
    COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/broken/expect_red.py
            --check "${red_row}" --
            ${Python3_EXECUTABLE} ${PROJECT_SOURCE_DIR}/scripts/leaklab.py check ${kernel}
            --variant fixed --tool native --scale quick --build-dir ${broken_dir} --out ${broken_dir}/runs)
  set_tests_properties(broken.zoo.${kernel}.fixed.native PROPERTIES
    LABELS "quick;native;broken;zoo;${family}" TIMEOUT 120 SKIP_RETURN_CODE 77)
endforeach()

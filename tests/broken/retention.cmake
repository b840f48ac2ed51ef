# Retention kernels with their fix taken out, as the zoo's (zoo.cmake): each
# kernel marks its fix LL_FIX / LL_FIX_VALUE, and built with -DLL_BREAK_FIX
# its fixed variant runs the leaky code. The [truth]'s resident row must then
# turn red: the memory the fix gives back (or never takes) is resident again.
# One test per fix family: KERNEL|VARIANT|ALLOCATOR|PHASE|FAMILY.
set(LEAKLAB_BROKEN_RETENTION
    "heap_top_pin|trimmed|glibc|freed|trim"
    "heap_top_pin|ordered|glibc|freed|order"
    "arena_fanout|fixed|glibc|done|arena_max"
    "mmap_ratchet|fixed|glibc|freed|mmap_threshold"
    "stack_cache|returned|glibc|exited|own_stacks"
    "sparse_survivors|returned|glibc|released|compaction"
    "tcmalloc_cache|returned|tcmalloc|released|mark_idle"
    "jemalloc_decay|returned|jemalloc|freed|decay"
    "jemalloc_decay|purged|jemalloc|freed|purge"
    "thp_sparse|fixed|glibc|touched|nohugepage")
# A tcmalloc or jemalloc run starts with the allocstats agent of its build
# folder (scripts/run/runner.py, PRELOADS): the broken folder's is the build's.
file(MAKE_DIRECTORY ${broken_dir}/threadcheck/allocstats)
file(CREATE_LINK ${PROJECT_BINARY_DIR}/threadcheck/allocstats/liballocstats.so
     ${broken_dir}/threadcheck/allocstats/liballocstats.so SYMBOLIC)
foreach(entry IN LISTS LEAKLAB_BROKEN_RETENTION)
  string(REPLACE "|" ";" entry "${entry}")
  list(GET entry 0 kernel)
  list(GET entry 1 variant)
  list(GET entry 2 allocator)
  list(GET entry 3 phase)
  list(GET entry 4 family)
  if(NOT allocator IN_LIST LEAKLAB_ALLOCATORS)
    continue()
  endif()
  set(target broken_retention_${kernel}_${allocator})
  set(output ${kernel})
  if(NOT allocator STREQUAL "glibc")
    set(output ${kernel}-${allocator})
  endif()
  if(NOT TARGET ${target})
    add_executable(${target} ${PROJECT_SOURCE_DIR}/scenarios/retention/${kernel}.c)
    target_compile_definitions(${target} PRIVATE LL_BREAK_FIX)
    target_link_libraries(${target} PRIVATE leaklab_${allocator})
    set_target_properties(${target} PROPERTIES OUTPUT_NAME ${output} RUNTIME_OUTPUT_DIRECTORY ${broken_dir}/scenarios)
  endif()
  set(test broken.retention.${kernel}.${variant}.native)
  add_test(NAME ${test}
    COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/broken/expect_red.py
            --check "truth: rss_anon_bytes@${phase} - @baseline ≈ resident" --
            ${Python3_EXECUTABLE} ${PROJECT_SOURCE_DIR}/scripts/leaklab.py check ${kernel}
            --variant ${variant} --allocator ${allocator} --tool native --scale quick
            --build-dir ${broken_dir} --out ${broken_dir}/runs)
  set_tests_properties(${test} PROPERTIES
    LABELS "quick;native;broken;retention;${family}" TIMEOUT 120 SKIP_RETURN_CODE 77)
endforeach()

# leaklab_add_scenario(NAME
#     [SOURCES extra.c ...]          # besides scenarios/NAME.c
#     [VARIANTS leaky fixed ...]     # default: leaky fixed
#     [ALLOCATORS glibc tcmalloc ...]# native tests per allocator (default: glibc)
#     [TOOLS heapprof memcheck ...]  # tool tests at quick scale, besides LEAKLAB_MATRIX_TOOLS
#     [TOOL_ARGS_<TOOL> args ...]    # scenario options for that tool's tests
#     [NO_MATRIX]                    # only the TOOLS given, not every matrix tool
#     [NO_SEED]                      # no seed-scale tests
#     [TOOLS_IN_DEFAULT_TIER])       # its tool and canary tests in the default tier
#
# Two tiers (CMakePresets.json): the default tier, what a developer runs after
# every change, and the full tier, the regression baseline. A test belongs to
# the full tier only when it carries the label `full`; everything else is the
# default tier. Here: every native quick test is default; seed scale, release
# columns and the tool x scenario cells are `full`, except the tool and canary
# cells of the scenarios registered with TOOLS_IN_DEFAULT_TIER, so that the
# default tier still runs every tool, and its canary, on one scenario.
#
# Every scenario is a row of the cross-tool matrix (`leaklab matrix`), so it
# gets a quick-scale test per variant under every tool of LEAKLAB_MATRIX_TOOLS
# (and of TOOLS), labelled with the tool's name. Each tool also gets a canary
# test, <scenario>.<last variant>.<tool>.canary: the run plants what the tool
# must report (--canary: one definite leak of 31,337 bytes; for tsan
# --canary-thread: a finished thread nobody joined; for threadcheck
# --canary-stuck-thread: a thread left blocked for good; for orphans
# --canary-orphan: a thread blocked on a condvar whose only pointer was dropped), so a broken or stubbed
# tool fails instead of agreeing with every expectation.
#
# Builds NAME against glibc malloc and NAME-<allocator> against every other
# allocator found, and registers the CTest tests, named
# <scenario>.<variant>.<tool>[.<allocator>][.seed], each one a
# `leaklab.py check` run. Every test is registered whether or not its tool or
# allocator is installed: the check exits 77 and CTest shows "Not Run" with
# the reason, so a missing tool is visible, never a pass.
set(LEAKLAB_MATRIX_TOOLS memcheck heapprof heapcheck lsan asan tsan heaptrack threadcheck orphans)
# The thread checkers that name a cause (docs/tools.md, "Causes"): columns of
# the matrix, but registered only where a scenario asks for them (TOOLS
# helgrind drd: the zoo kernels, whose checks follow from their truth, and
# blocked_workers, for the default tier's cell and canary of each).
set(LEAKLAB_CAUSE_TOOLS helgrind drd)
# The profilers (docs/tools.md, "Valgrind Massif", "Valgrind DHAT"): columns of
# the matrix, registered only on the retention kernels and delayed_exit, whose
# expected files say what each sees of freed-but-resident memory.
set(LEAKLAB_PROFILE_TOOLS massif dhat)

function(leaklab_add_scenario name)
  set(tool_args_keywords "")
  foreach(tool IN LISTS LEAKLAB_MATRIX_TOOLS)
    list(APPEND tool_args_keywords TOOL_ARGS_${tool})
  endforeach()
  cmake_parse_arguments(PARSE_ARGV 1 arg "NO_SEED;NO_MATRIX;TOOLS_IN_DEFAULT_TIER" ""
    "SOURCES;VARIANTS;ALLOCATORS;TOOLS;${tool_args_keywords}")
  if(NOT arg_NO_MATRIX)
    # LEAKLAB_RELEASE_TOOLS: release columns asked for (lsan@clang-19 ...;
    # cmake/LeaklabSanitizers.cmake); empty unless LEAKLAB_TOOL_RELEASES is set.
    list(APPEND arg_TOOLS ${LEAKLAB_MATRIX_TOOLS} ${LEAKLAB_RELEASE_TOOLS})
  endif()
  list(REMOVE_DUPLICATES arg_TOOLS)
  if(NOT arg_VARIANTS)
    set(arg_VARIANTS leaky fixed)
  endif()
  if(NOT arg_ALLOCATORS)
    set(arg_ALLOCATORS glibc)
  endif()

  if(LEAKLAB_SANITIZER)
    # A sanitizer sub-build: one binary, NAME-<lsan|asan|tsan>[@RELEASE], no tests.
    leaklab_sanitizer_executable(${name} ${name}.c ${arg_SOURCES})
    return()
  endif()

  foreach(allocator IN LISTS LEAKLAB_ALLOCATORS)
    set(target ${name})
    if(NOT allocator STREQUAL "glibc")
      set(target ${name}-${allocator})
    endif()
    add_executable(${target} ${name}.c ${arg_SOURCES})
    target_link_libraries(${target} PRIVATE leaklab_${allocator})
  endforeach()
  set_property(GLOBAL APPEND PROPERTY LEAKLAB_SCENARIOS ${name})

  if(NOT BUILD_TESTING)
    return()
  endif()
  # --measurements: the run's key figures as <CTestMeasurement> lines, which
  # `ctest -T Test` puts into Test.xml (and CDash plots).
  set(check ${Python3_EXECUTABLE} ${PROJECT_SOURCE_DIR}/scripts/leaklab.py check ${name}
            --build-dir ${PROJECT_BINARY_DIR} --out ${PROJECT_BINARY_DIR}/runs --measurements)
  foreach(variant IN LISTS arg_VARIANTS)
    foreach(allocator IN LISTS arg_ALLOCATORS)
      set(suffix "")
      if(NOT allocator STREQUAL "glibc" OR NOT arg_ALLOCATORS STREQUAL "glibc")
        set(suffix ".${allocator}")
      endif()
      _leaklab_test(${name}.${variant}.native${suffix} quick native
        ${check} --variant ${variant} --allocator ${allocator} --tool native --scale quick)
      if(NOT arg_NO_SEED)
        _leaklab_test(${name}.${variant}.native${suffix}.seed seed native
          ${check} --variant ${variant} --allocator ${allocator} --tool native --scale seed)
      endif()
    endforeach()
    foreach(tool IN LISTS arg_TOOLS)
      string(REGEX REPLACE "@.*" "" base_tool ${tool}) # lsan@clang-19: lsan's options
      set(tool_args "")
      if(arg_TOOL_ARGS_${base_tool})
        set(tool_args -- ${arg_TOOL_ARGS_${base_tool}})
      endif()
      _leaklab_test(${name}.${variant}.${tool} quick ${tool}
        ${check} --variant ${variant} --tool ${tool} --scale quick ${tool_args})
      if(NOT tool STREQUAL base_tool)
        set_property(TEST ${name}.${variant}.${tool} APPEND PROPERTY LABELS releases)
      endif()
      _leaklab_tool_tier(${name}.${variant}.${tool} ${tool} ${base_tool} ${arg_TOOLS_IN_DEFAULT_TIER})
    endforeach()
  endforeach()
  list(GET arg_VARIANTS -1 canary_variant)
  foreach(tool IN LISTS arg_TOOLS)
    string(REGEX REPLACE "@.*" "" base_tool ${tool})
    # ThreadSanitizer reports threads, not memory: its canary is a thread.
    set(canary --canary)
    if(base_tool STREQUAL "tsan")
      set(canary --canary-thread)
    elseif(base_tool STREQUAL "threadcheck")
      set(canary --canary-stuck-thread) # threadcheck reports threads alive at exit: a blocked one
    elseif(base_tool STREQUAL "orphans")
      set(canary --canary-orphan) # orphans reports threads nothing can wake: one on a dropped condvar
    elseif(base_tool STREQUAL "helgrind")
      set(canary --canary --canary-lock-order) # a lock-order inversion (--canary: scripts/tools/helgrind.py)
    elseif(base_tool STREQUAL "drd")
      set(canary --canary --canary-race) # a data race: DRD keeps no lock-order graph
    elseif(base_tool STREQUAL "massif")
      set(canary --canary-map) # pages mapped and kept: massif --pages-as-heap counts pages, not blocks
    endif()
    set(tool_args -- ${canary})
    if(arg_TOOL_ARGS_${base_tool})
      set(tool_args -- ${arg_TOOL_ARGS_${base_tool}} ${canary})
    endif()
    _leaklab_test(${name}.${canary_variant}.${tool}.canary quick ${tool}
      ${check} --variant ${canary_variant} --tool ${tool} --scale quick ${tool_args})
    set_property(TEST ${name}.${canary_variant}.${tool}.canary APPEND PROPERTY LABELS canary)
    if(NOT tool STREQUAL base_tool)
      set_property(TEST ${name}.${canary_variant}.${tool}.canary APPEND PROPERTY LABELS releases)
    endif()
    _leaklab_tool_tier(${name}.${canary_variant}.${tool}.canary ${tool} ${base_tool} ${arg_TOOLS_IN_DEFAULT_TIER})
  endforeach()
endfunction()

# The cost (seconds, as measured on a 2-core machine) CTest assumes for a test
# before it has timings of its own: the long ones start first, so a parallel
# run does not end on one long test with the other cores idle.
set(LEAKLAB_COST_SEED 60)
set(LEAKLAB_COST_QUICK 3)
set(LEAKLAB_COST_TOOL_QUICK 8)

function(_leaklab_test test_name scale tool)
  add_test(NAME ${test_name} COMMAND ${ARGN})
  string(REPLACE "." ";" parts ${test_name})
  list(GET parts 1 variant)
  set(labels "${scale};${tool};${variant}")
  if(scale STREQUAL "seed")
    set(timeout ${LEAKLAB_SEED_TIMEOUT})
    set(cost ${LEAKLAB_COST_SEED})
    list(APPEND labels full)
  else()
    set(timeout ${LEAKLAB_QUICK_TIMEOUT})
    set(cost ${LEAKLAB_COST_QUICK})
    if(NOT tool STREQUAL "native")
      set(cost ${LEAKLAB_COST_TOOL_QUICK})
    endif()
  endif()
  set_tests_properties(${test_name} PROPERTIES
    LABELS "${labels}" TIMEOUT ${timeout} SKIP_RETURN_CODE 77 COST ${cost})
  if(scale STREQUAL "seed")
    leaklab_machine_test(${test_name})
  endif()
endfunction()

# A test that needs the machine to itself: seed scale (10,000 threads and
# about a gigabyte, on every core) and runs whose figures are timings. It
# asks for every slot `./leaklab test` and the presets use (two per core;
# CTest caps PROCESSORS at -j, so at that -j or below nothing runs beside
# it) and takes the lock `machine`, so two of them never overlap at any -j.
# The rest of the suite runs side by side around them.
function(leaklab_machine_test test_name)
  cmake_host_system_information(RESULT cores QUERY NUMBER_OF_LOGICAL_CORES)
  math(EXPR slots "${cores} * 2")
  set_tests_properties(${test_name} PROPERTIES PROCESSORS ${slots} RESOURCE_LOCK machine)
endfunction()

# Tool and canary cells: in the full tier unless the scenario asked for them
# in the default tier; release columns (lsan@clang-19) always in the full tier.
function(_leaklab_tool_tier test_name tool base_tool in_default_tier)
  if(NOT in_default_tier OR NOT tool STREQUAL base_tool)
    set_property(TEST ${test_name} APPEND PROPERTY LABELS full)
  endif()
endfunction()

"""One module per tool column (memcheck, heapprof, heapcheck, lsan, asan, tsan, heaptrack,
threadcheck, orphans) and what they share: tools.py (tool.json, leak kinds, TOOL@RELEASE),
sanitizer.py (the sanitizers' releases and reports), pprof_format.py (pprof profiles)."""

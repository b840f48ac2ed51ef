"""leaklab's scripts, one package whose folders are the layers. Imports point
down this list and never back (tests/scripts/test_layers.py checks it):

    cli/      the `leaklab` commands and their arguments
    dev/      tools for working on leaklab itself: fuzz, flaky
    views/    pages and tables made from run directories: report, matrix, measurements, zoo catalog
    outside/  looking into a live process from outside: threads (with threadcheck/outside/)
    run/      one scenario into one run directory: runner, timeline, the rw_gateway driver
    expect/   the expected-file language and the comparer (run directory -> verdict)
    tools/    one module per tool column, and what they share (tools.py, sanitizer.py, pprof_format.py)
    base/     what every layer shares: the exit codes, the events.jsonl reader

The Python files at the top (leaklab.py, gateway.py, fuzz.py, zoo_catalog.py)
are launchers kept at the paths ./leaklab, CMake and the docs call; install-deps
and lane are shell scripts."""

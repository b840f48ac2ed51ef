#!/usr/bin/env bash
# delayed_exit_timelines.sh: draws docs/img/delayed_exit_timelines.svg, the
# three allocators side by side, from three run directories of
#   ./leaklab run delayed_exit --allocator A --scale seed    (A = glibc, tcmalloc, jemalloc)
# (at seed scale expected/delayed_exit.toml adds --idle-ms 15000).
# It copies each run's timeline.csv (every 10th sample) and phases.csv into
# docs/img/delayed_exit/ so the plot can be redrawn without the runs, then
# runs gnuplot on delayed_exit_timelines.gp.
# usage: docs/img/delayed_exit_timelines.sh GLIBC_RUN TCMALLOC_RUN JEMALLOC_RUN
#        docs/img/delayed_exit_timelines.sh --redraw    (from the copied data)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
data=$here/delayed_exit

if [ "${1:-}" != "--redraw" ]; then
    if [ $# -ne 3 ]; then
        echo "usage: $0 GLIBC_RUN TCMALLOC_RUN JEMALLOC_RUN | --redraw" >&2
        exit 2
    fi
    mkdir -p "$data"
    allocators=(glibc tcmalloc jemalloc)
    for i in 0 1 2; do
        run=$1; shift
        a=${allocators[$i]}
        for f in timeline.csv phases.csv events.jsonl; do
            [ -f "$run/$f" ] || { echo "$0: $run/$f: no such file (not a run directory?)" >&2; exit 2; }
        done
        grep -q "\"allocator\":\"$a\"" "$run/events.jsonl" ||
            { echo "$0: $run is not a $a run (argument order: glibc tcmalloc jemalloc)" >&2; exit 2; }
        awk 'NR == 1 || NR % 10 == 2' "$run/timeline.csv" >"$data/$a-timeline.csv"
        cp "$run/phases.csv" "$data/$a-phases.csv"
        # One label per phase name: the repeated `idle` snapshots get one.
        awk -F, 'NR > 1 && !seen[$2]++ { print $1 "," $2 }' "$run/phases.csv" >"$data/$a-labels.csv"
    done
fi
command -v gnuplot >/dev/null || { echo "$0: gnuplot is not installed (scripts/install-deps)" >&2; exit 77; }
cd "$here" && gnuplot delayed_exit_timelines.gp
echo "wrote $here/delayed_exit_timelines.svg"

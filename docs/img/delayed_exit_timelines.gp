# delayed_exit_timelines.gp: one panel per allocator, same axes, from the data
# delayed_exit_timelines.sh copied into delayed_exit/. Blue line: RSS sampled
# by the runner every 10 ms (every 10th sample kept); blue dots: RSS in each
# phase snapshot (the last one, `released`, comes after the sampler's last
# sample); red: heap in use at each phase snapshot, held until the next;
# green: threads (right axis); dashed lines: the phases.
set terminal svg size 1500,520 dynamic noenhanced font "sans,11" background rgb "white"
set output "delayed_exit_timelines.svg"
set datafile separator ","
set multiplot layout 1,3 title "delayed_exit retained, seed scale (10,000 workers x 89,184 B = 892 MB payload; --idle-ms 15000)"
set xlabel "seconds since start"
set ylabel "MiB"
set y2label "threads"
set ytics nomirror
set y2tics
set yrange [0:3600]
set y2range [0:12000]
set xrange [0:30]
set grid
set key below horizontal
do for [a in "glibc tcmalloc jemalloc"] {
    set title a
    plot "delayed_exit/".a."-labels.csv" using 1:(3600):(0):(-3600) with vectors nohead dt 2 lc rgb "#999999" notitle, \
         "delayed_exit/".a."-labels.csv" using 1:(3550):2 with labels rotate by 90 right offset -0.7,0 tc rgb "#444444" notitle, \
         "delayed_exit/".a."-timeline.csv" skip 1 using 1:($2/1048576) with lines lw 2 lc rgb "#1f77b4" title "RSS", \
         "delayed_exit/".a."-phases.csv" skip 1 using 1:($3/1048576) with steps lw 1.5 lc rgb "#d62728" notitle, \
         "delayed_exit/".a."-phases.csv" skip 1 using 1:($3/1048576) with points pt 7 ps 0.6 lc rgb "#d62728" title "heap in use", \
         "delayed_exit/".a."-phases.csv" skip 1 using 1:($4/1048576) with points pt 7 ps 0.6 lc rgb "#1f77b4" title "RSS at phases", \
         "delayed_exit/".a."-timeline.csv" skip 1 using 1:3 axes x1y2 with steps lw 1.5 lc rgb "#2ca02c" title "threads"
}
unset multiplot

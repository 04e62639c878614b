# shellcheck shell=bash
# The numbers of the benchmarks (scripts/bench-*; sourced, not run): medians, elapsed times and
# the verdict of a figure against its target, one definition each.

# median: the median of the numbers on stdin, one per line ("nan" when there is none).
median() {
    sort -n | awk '{ v[NR] = $1 } END {
        if (NR == 0) { print "nan"; exit }
        m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.3f\n", m }'
}

# spread [DECIMALS]: "min-max" of the numbers on stdin, with DECIMALS decimals (default one;
# "nan" when there is none).
spread() {
    sort -n | awk -v d="${1:-1}" 'NR == 1 { lo = $1 } { hi = $1 } END {
        if (NR == 0) { print "nan"; exit }
        printf "%.*f-%.*f\n", d, lo, d, hi }'
}

# elapsed_s START END: seconds between two $EPOCHREALTIME values, two decimals.
elapsed_s() {
    awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f\n", b - a }'
}

# verdict VALUE OP LIMIT: "ok" when VALUE OP LIMIT holds (OP is <=, <, >= or >), else "MISSED".
verdict() {
    awk -v v="$1" -v op="$2" -v limit="$3" 'BEGIN {
        if (op == "<=") ok = v <= limit
        else if (op == "<") ok = v < limit
        else if (op == ">=") ok = v >= limit
        else if (op == ">") ok = v > limit
        else { print "bad verdict operator " op > "/dev/stderr"; exit 2 }
        print ok ? "ok" : "MISSED" }'
}

#!/bin/sh
# Runs libFuzzer targets built in build-fuzz/ (see the Makefile's fuzz block).
#   fuzz/run.sh long SECONDS TARGET...   fuzz each target SECONDS
#   fuzz/run.sh ci SECONDS TARGET...     replay each seed corpus, then fuzz SECONDS
# One summary line per target; exit 1 if any target crashed (a sanitizer
# report, a leak, a timeout of 30 s on one input or 2 GB of memory).
# The seed corpus fuzz/corpus/T is only read; new inputs go to
# build-fuzz/corpus/T, crashing inputs to build-fuzz/crashes/T-*, the full
# output to build-fuzz/logs/T.log.
mode=$1 secs=$2
shift 2
export OPENBLAS_NUM_THREADS=1 # deterministic, and no uninstrumented thread pool
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
opts="-timeout=30 -rss_limit_mb=2048 -max_len=16384 -print_final_stats=1"
opts="$opts -artifact_prefix=build-fuzz/crashes/"
mkdir -p build-fuzz/logs build-fuzz/crashes
failed=0
for t in "$@"; do
    bin=build-fuzz/fuzz_$t seeds=fuzz/corpus/$t work=build-fuzz/corpus/$t
    o="$opts$t-"
    log=build-fuzz/logs/$t.log
    mkdir -p "$work"
    : >"$log"
    status=ok
    if [ "$mode" = ci ]; then
        # every seed once (no mutation), then a short bounded run
        "$bin" $o -runs=0 "$seeds" >>"$log" 2>&1 || status="CRASH on a seed"
    fi
    if [ "$status" = ok ]; then
        "$bin" $o -max_total_time="$secs" \
            "$work" "$seeds" >>"$log" 2>&1 || status=CRASH
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -n 1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1)
    seeds_n=$(find "$seeds" -type f | wc -l)
    if [ "$status" = ok ]; then
        printf 'fuzz %-10s ok     %s s, %s runs, %s, %s seeds, peak %s MB\n' "$t" "$secs" \
            "${runs:-?}" "${cov:-cov: ?}" "$seeds_n" "${rss:-?}"
    else
        failed=1
        art=$(ls -t build-fuzz/crashes/"$t"-* 2>/dev/null | head -n 1)
        printf 'fuzz %-10s %s  see %s%s\n' "$t" "$status" "$log" "${art:+, input $art}"
        grep -m 3 -E 'ERROR: |runtime error|SUMMARY' "$log" | sed 's/^/    /'
    fi
done
exit $failed

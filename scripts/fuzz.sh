#!/usr/bin/env bash
# Fuzzes sdflow's readers of untrusted input with libFuzzer (Swift's -sanitize=fuzzer,address).
#
#   scripts/fuzz.sh [--seconds S | --runs N] [--keep-going] [TARGET...]
#
# Targets (Fuzz/Harnesses/Harnesses.swift): png jpeg safetensors checkpoint workflow rerun plugin pickle
# (default: all). Each runs for S seconds (default 20) or N executions, one after another, starting
# from the seeds (Fuzz/corpus/TARGET plus the test fixtures) and the corpus kept from earlier runs
# in .build-fuzz/corpus/TARGET. A crash, sanitizer report, timeout (10 s) or memory blow-up
# (2 GB) is written to .build-fuzz/findings/TARGET/ and makes the script exit 1, after the rest
# of the targets ran with --keep-going. Prints one line per target: executions, time, rate.
#
# Short runs are part of scripts/test.sh; long runs, for example ten million executions each:
#   scripts/fuzz.sh --runs 10000000
set -euo pipefail
cd "$(dirname "$0")/.."

all=(png jpeg safetensors checkpoint workflow rerun plugin pickle)
limit=(-max_total_time=20)
keep_going=0
targets=()
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) limit=(-max_total_time="$2"); shift 2 ;;
        --runs) limit=(-runs="$2"); shift 2 ;;
        --keep-going) keep_going=1; shift ;;
        -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "fuzz.sh: unknown option $1" >&2; exit 2 ;;
        *) targets+=("$1"); shift ;;
    esac
done
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")
for t in "${targets[@]}"; do
    [[ " ${all[*]} " == *" $t "* ]] || { echo "fuzz.sh: unknown target '$t' (targets: ${all[*]})" >&2; exit 2; }
done

work=.build-fuzz
echo "building the fuzz harnesses (release, -sanitize=fuzzer,address) in $work ..."
# --sanitize gives each Swift compile two -sanitize= flags, of which the Swift driver keeps only
# the last (in an order that varies between builds): the -Xswiftc flag, last, asks for both.
SDFLOW_FUZZ=1 swift build -c release --build-path "$work" --product sdflow-fuzz \
    --sanitize fuzzer --sanitize address -Xswiftc -sanitize=fuzzer,address 2>&1 | grep -E "error|warning: |Build complete" | grep -v "ld.gold: warning" || true
binary="$work/release/sdflow-fuzz"
[ -x "$binary" ] || { echo "fuzz.sh: the build failed" >&2; exit 1; }

# Seeds: the committed ones and the fixtures that fit the target.
seeds() {
    local t=$1 dir=$work/seeds/$1
    rm -rf "$dir"; mkdir -p "$dir"
    [ -d "Fuzz/corpus/$t" ] && cp Fuzz/corpus/"$t"/* "$dir"/
    case "$t" in
        png) cp Tests/Fixtures/images/*.png Tests/Fixtures/fuzz/png-*.png "$dir"/ ;;
        jpeg) cp Tests/Fixtures/images/*.jpg "$dir"/ ;;
        safetensors) cp Tests/Fixtures/dtypes.safetensors "$dir"/ ;;
        checkpoint) cp Tests/Fixtures/fuzz/checkpoint-*.json "$dir"/ ;;
        workflow) cp workflows/*.yaml "$dir"/ ;;
        pickle) cp Tests/Fixtures/pickle/*.p* Tests/Fixtures/embeddings/pickled.pt Tests/Fixtures/upscalers/*.pth "$dir"/ ;;
    esac
    echo "$dir"
}

failed=0
printf '%-12s %12s %9s %10s  %s\n' target executions seconds "execs/s" result
for t in "${targets[@]}"; do
    corpus=$work/corpus/$t findings=$work/findings/$t log=$work/logs/$t.log
    mkdir -p "$corpus" "$findings" "$(dirname "$log")"
    seed_dir=$(seeds "$t")
    start=$(date +%s.%N)
    status=0
    SDFLOW_FUZZ_TARGET=$t ASAN_OPTIONS=detect_leaks=0:quarantine_size_mb=64 "$binary" "$corpus" "$seed_dir" "${limit[@]}" \
        -timeout=10 -rss_limit_mb=2048 -max_len=131072 -print_final_stats=1 \
        -artifact_prefix="$findings/" > "$log" 2>&1 || status=$?
    seconds=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    runs=${runs:-0}
    result="ok, no findings"
    if [ $status -ne 0 ]; then
        result="FOUND a problem (exit $status): $(ls "$findings" | head -3 | tr '\n' ' ')- see $log"
        failed=1
    fi
    printf '%-12s %12s %9.1f %10.0f  %s\n' "$t" "$runs" "$seconds" "$(awk -v r="$runs" -v s="$seconds" 'BEGIN { print r / s }')" "$result"
    if [ $failed -ne 0 ] && [ $keep_going -eq 0 ]; then exit 1; fi
done
exit $failed

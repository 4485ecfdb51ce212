#!/usr/bin/env bash
# An idle town of 5 rigs with its loops running (one daemon; a Witness and a
# Refinery per rig): CPU over a measured minute, and the wake-ups of those
# processes that readers cause (`gt status` x 10). Writes the idle section of
# BENCHMARKS.md. Not part of `cargo test`.
#
#   bench/idle.sh              release build, then the measurements
#   bench/idle.sh --no-build   measure the release binaries already built
#   bench/idle.sh --quick      a 10 s CPU window, results to stdout only
#
# A wake-up is a context switch of any thread of a loop process
# (voluntary + involuntary, /proc/<pid>/task/*/status): a sleeping loop that
# no one wakes has none. CPU is each thread's run time from
# /proc/<pid>/task/*/schedstat (in ns; utime and stime count 10 ms ticks).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=bench/section.sh
. bench/section.sh
bench_start idle.sh "$@"
work=$(mktemp -d "$root/target/bench-idle.XXXXXX")
pids=()
# Whether process $1 holds an inotify descriptor (its watches are set up).
watches() {
  local fd
  for fd in "/proc/$1/fd/"*; do
    [ "$(readlink "$fd" 2>/dev/null)" = anon_inode:inotify ] && return 0
  done
  return 1
}
stop_loops() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}
trap 'stop_loops; rm -rf "$work"' EXIT
export GT_TOWN=$work/town PATH="$bin:$PATH" GT_SESSION_BACKEND=process
rigs=5
window=$([ $quick = 1 ] && echo 10 || echo 60)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

git init -q --bare -b main "$work/origin.git"
git clone -q "$work/origin.git" "$work/seed" 2>/dev/null
git -C "$work/seed" -c user.name=b -c user.email=b@b commit -q --allow-empty -m init
git -C "$work/seed" push -q origin HEAD:main
gt install "$GT_TOWN" >/dev/null
for r in $(seq 1 $rigs); do gt rig add "rig$r" "$work/origin.git" >/dev/null; done

# start_loops EVERY: the daemon and each rig's Witness and Refinery, each
# waited for until its first pass is done (the daemon and the Witness say
# "watching" on stderr; the Refinery, silent while idle, has its inotify
# descriptor once its first pass is done).
start_loops() {
  local every=$1 r n=0 p
  gt-daemon run --every "$every" >/dev/null 2>"$work/loop$n.err" &
  pids+=($!)
  for r in $(seq 1 $rigs); do
    n=$((n + 1))
    gt-witness run "rig$r" --every "$every" >/dev/null 2>"$work/loop$n.err" &
    pids+=($!)
    n=$((n + 1))
    gt-refinery process "rig$r" >/dev/null 2>"$work/loop$n.err" &
    pids+=($!)
  done
  local deadline=$((SECONDS + 30))
  n=0
  for p in "${pids[@]}"; do
    until grep -q watching "$work/loop$n.err" ||
      { [ ! -s "$work/loop$n.err" ] && watches "$p"; }; do
      if [ $SECONDS -ge $deadline ] || ! kill -0 "$p" 2>/dev/null; then
        echo "bench/idle.sh: loop $p never became ready" >&2
        cat "$work"/loop*.err >&2
        exit 1
      fi
      sleep 0.05
    done
    n=$((n + 1))
  done
}
switches() { # total context switches of every thread of the loops
  local p t n=0
  for p in "${pids[@]}"; do
    for t in /proc/"$p"/task/*/status; do
      n=$((n + $(awk '/ctxt_switches/ { s += $2 } END { print s }' "$t")))
    done
  done
  echo "$n"
}
cpu_ns() { # CPU time of every thread of the loops, in ns (schedstat: exact, not in ticks)
  local p t n=0
  for p in "${pids[@]}"; do
    for t in /proc/"$p"/task/*/schedstat; do
      n=$((n + $(cut -d' ' -f1 "$t")))
    done
  done
  echo "$n"
}
status10() { for _ in $(seq 10); do gt status >/dev/null; done; }

# 1. CPU at idle, default intervals (the loops' own timers included).
start_loops 30s
sleep 2
c0=$(cpu_ns) w0=$(switches)
sleep "$window"
c1=$(cpu_ns) w1=$(switches)
cpu=$(awk -v d=$((c1 - c0)) -v w="$window" 'BEGIN { printf "%.4f", d / 1e9 * 60 / w }')
timer_wakes=$((w1 - w0))
stop_loops

# 2. Wake-ups caused by readers, with the loops' timers an hour away so
#    that any switch is caused by something else: first the same time idle,
#    then ten `gt status` runs and a `gt-mail check` of each Witness's mail
#    (which the Witness watches).
start_loops 1h
sleep 1
t0=$(date +%s.%N)
status10
dt=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')
s0=$(switches)
sleep "$dt"
s1=$(switches)
status10
for r in $(seq 1 $rigs); do
  gt-mail --as "rig$r/witness" check >/dev/null
done
sleep 0.2
s2=$(switches)
idle_wakes=$((s1 - s0))
reader_wakes=$((s2 - s1))
loops=${#pids[@]}
stop_loops
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

section=$work/section.md
{
  echo "<!-- idle:begin (written by bench/idle.sh; edit the script, not this) -->"
  echo "## Idle town"
  echo
  echo "Run \`bench/idle.sh\` ($(date -u +%Y-%m-%d), commit $(git rev-parse --short HEAD))."
  echo
  echo "**Machine:** $(nproc) cores, Linux $(uname -r). Load average before/after: $load_before / $load_after (other builds share the machine)."
  echo
  echo "**Method:** a town of $rigs rigs (one origin, \`gt rig add\`), release build, with $loops loop processes: \`gt-daemon run\`, and per rig \`gt-witness run\` and \`gt-refinery process\`, each started and waited for until its first pass is done. CPU: the run time of every thread of all of them (/proc/<pid>/task/*/schedstat, ns) over ${window} s with the default 30 s intervals, scaled to a minute. Wake-ups: context switches (voluntary + involuntary) of every thread of every loop, from /proc/<pid>/task/*/status, with the intervals at 1 h: first over as long idle as the readers take, then over ten \`gt status\` runs plus \`gt-mail check\` of each Witness's mail, and 200 ms after."
  echo
  echo "| measurement | result | target |"
  echo "|---|---|---|"
  echo "| CPU of the idle town ($loops loops, $rigs rigs) | $cpu CPU-s a minute | ≤ 0.02: $(awk -v c="$cpu" 'BEGIN { print (c <= 0.02 ? "**met**" : "**MISSED**") }') |"
  echo "| wake-ups of the loops in that minute (their own 30 s timers; shows the count works) | $timer_wakes | — |"
  echo "| wake-ups of the loops, idle for ${dt%???} s, timers at 1 h | $idle_wakes | (baseline) |"
  echo "| wake-ups of the loops caused by 10 \`gt status\` + $rigs \`gt-mail check\` | $reader_wakes | 0: $([ "$reader_wakes" -le 0 ] && echo '**met**' || echo '**MISSED**') |"
  echo
  echo "The watches ask inotify for changes only (created, written, renamed, removed, attributes; src/watch.rs), never for opens, reads or read-only closes, and readers write nothing (\`gt status\` reads mail with \`Reader::peek\`, which saves no cursor)."
  echo "<!-- idle:end -->"
} > "$section"
if [ $quick = 1 ]; then
  cat "$section"
  exit 0
fi
replace_section idle "$section"
echo "bench/idle.sh: wrote the idle section of BENCHMARKS.md"

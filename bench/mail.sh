#!/usr/bin/env bash
# Mail benchmarks, side by side in one run; writes the mail section of
# BENCHMARKS.md (machine, method, numbers). Not part of `cargo test`.
#
#   bench/mail.sh            release build, then every measurement below
#   bench/mail.sh --peers    also the PyPI peers (bench/peers.sh, throwaway venv)
#   bench/mail.sh --quick    small counts, results to stdout only (a smoke run)
#   bench/mail.sh --no-build measure the release binaries already built
#
# Needs: cargo, hyperfine (apt install hyperfine), flock, jq; python3 -m venv for --peers.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
# shellcheck source=bench/section.sh disable=SC1091
. "$root/bench/section.sh"
peers=0
rest=()
for a in "$@"; do
  case $a in
    --peers) peers=1 ;;
    *) rest+=("$a") ;;
  esac
done
bench_start mail.sh "${rest[@]}"
[ $quick = 1 ] && export GT_BENCH_QUICK=1
for t in hyperfine jq flock; do
  command -v "$t" >/dev/null || { echo "bench/mail.sh: needs $t" >&2; exit 2; }
done

work=$(mktemp -d "$root/target/bench-run.XXXXXX")
trap 'rm -rf "$work"' EXIT
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

# 1. In-process appends, durable vs default, gt inbox on a huge inbox, watch
#    latency: benches/mail.rs prints its own table rows.
cargo bench --quiet --bench mail > "$work/inproc.md"

# 2. Whole-process sends against the shell way, with hyperfine (-N: no shell
#    between hyperfine and the command, so no shell start-up is counted but the
#    shell way's own `sh -c`).
runs=$([ $quick = 1 ] && echo 30 || echo 1000)
town=$work/town
"$bin/gt" install "$town" >/dev/null
export GT_TOWN=$town GT_ADDRESS=overseer
unset GT_DURABLE
body=$(printf 'x%.0s' $(seq 200))
inbox=$town/mayor/mail/inbox.jsonl
shell_line="{\\\"id\\\":\\\"sh-\$\$\\\",\\\"from\\\":\\\"overseer\\\",\\\"to\\\":\\\"mayor\\\",\\\"subject\\\":\\\"bench\\\",\\\"body\\\":\\\"$body\\\",\\\"timestamp\\\":\\\"2026-11-25T09:00:00Z\\\"}"
hyperfine -N --style none --warmup 20 --runs "$runs" --export-json "$work/send.json" \
  -n "shell: flock FILE -c 'printf … >> FILE'" "flock $town/mayor/mail/inbox.lock -c 'printf \"%s\\n\" \"$shell_line\" >> $inbox'" \
  -n 'gt-mail send' "$bin/gt-mail send mayor -s bench -m $body" \
  -n 'gt send (gt-mail run inside gt)' "$bin/gt send mayor -s bench -m $body" \
  -n 'gt-mail send --durable' "$bin/gt-mail send --durable mayor -s bench -m $body" \
  >/dev/null
# The shell way, for honesty, appends valid lines too:
jq -e . "$inbox" >/dev/null

{
  cat "$work/inproc.md"
  jq -r '
    (.results[] | select(.command | startswith("shell")) | .median) as $shell
    | .results[]
    | "| `\(.command)` (whole process, one 300-byte message) | median \(.median*1e3*100|round/100) ms, mean \(.mean*1e3*100|round/100) ms ± \(.stddev*1e3*100|round/100) | \(if (.command|startswith("shell")) then "1.00 (the shell way)" else "\($shell/.median*100|round/100)x the shell way'"'"'s speed" end) |"' "$work/send.json"
} > "$work/table.md"

if [ $peers = 1 ]; then
  bench/peers.sh "$work" "$bin" > "$work/peers.md"
fi
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

if [ $quick = 1 ]; then
  cat "$work/table.md"
  [ $peers = 1 ] && cat "$work/peers.md"
  exit 0
fi

fs=$(df -T "$root/target" | awk 'NR==2 {print $2}')
section=$work/section.md
{
  echo "<!-- mail:begin (written by bench/mail.sh; edit the script, not this) -->"
  echo "## Mail"
  echo
  echo "Run \`bench/mail.sh --peers\` ($(date -u +%Y-%m-%d), commit $(git rev-parse --short HEAD))."
  echo
  echo "**Machine:** $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GB RAM, Linux $(uname -r), $fs (files under target/), $(rustc --version | cut -d' ' -f1-2), hyperfine $(hyperfine --version | cut -d' ' -f2). Load average before/after: $load_before / $load_after (other builds may share the machine)."
  echo
  echo "**Method:** in-process rows time loops of 300-byte lines on one file (benches/mail.rs, \`cargo bench --bench mail\`); whole-process rows are hyperfine -N medians over $runs runs after 20 warm-ups, each run appending to the same inbox; \`gt inbox\` is timed over repeated whole-process runs on a generated inbox (the first run, which builds the read cursor, is shown separately); watch latency is from just before the append to the line read from the watcher's stdout pipe, one message at a time with 2 ms between messages."
  echo
  echo "| measurement | result | ratio / note |"
  echo "|---|---|---|"
  grep '^| ' "$work/table.md" | grep -v '^| measurement\|^|---'
  echo
  cat <<'NOTES'
Reading the numbers:

- *Per-message library appends* do more than the plain loop, which keeps one
  descriptor and does `flock`, `write`, unlock: a mail append must notice that
  the inbox was archived or replaced by an editor (a `stat` of the path under
  the lock), honour a shell's `flock inbox.jsonl` (a second `flock` and its
  unlock) and close a torn tail (`fstat`; it reads the last byte only when the
  file changed under it) — 7 system calls instead of 3. Batching amortises all
  of it: one `Appender::append` or `gt-mail deliver` with many lines is one
  lock and one `write`.
- *Whole-process sends* are dominated by starting a process; `gt send` runs
  gt-mail's code inside `gt` (one process start), a larger binary to load.
- *Durable* appends cost one `fdatasync` each (ext4 journal commit); the
  default is buffered and why is in protocol/mail.md, "Durability".
- *`gt inbox`* reads its cursor, checks both files' fingerprints, reads the
  bytes appended since, and the unread messages, one `pread` per run of
  adjacent unread lines: its cost does not grow with the inbox. The first run after the inbox is replaced reads
  everything once.
NOTES
  if [ $peers = 1 ]; then
    echo
    cat "$work/peers.md"
  fi
  echo "<!-- mail:end -->"
} > "$section"

# Replace the mail section of BENCHMARKS.md, keep everything else.
replace_section mail "$section"
echo "bench/mail.sh: wrote the mail section of BENCHMARKS.md"

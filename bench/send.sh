#!/usr/bin/env bash
# Whole-process `gt send` and `gt-mail send` against a minimal C program that
# does the same open + flock + append of the same 300-byte line, interleaved
# in one run. Writes the send section of BENCHMARKS.md. Not part of `cargo test`.
#
#   bench/send.sh              release build, then the measurements
#   bench/send.sh --no-build   measure the release binaries already built
#   bench/send.sh --quick      few rounds, results to stdout only
#
# Needs: cargo, cc, hyperfine, jq.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=bench/section.sh
. bench/section.sh
bench_start send.sh "$@"
bench_needs send.sh cc hyperfine jq
work=$(mktemp -d "$root/target/bench-send.XXXXXX")
trap 'rm -rf "$work"' EXIT
rounds=$([ $quick = 1 ] && echo 3 || echo 10)
runs=$([ $quick = 1 ] && echo 30 || echo 100)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

# The floor: what any sender must do. Lock the inbox's sidecar lock file,
# append one line with O_APPEND, unlock (the lock is released at exit).
cat > "$work/append.c" <<'C'
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>
int main(int argc, char **argv) {
  if (argc != 4) return 2;
  int lock = open(argv[1], O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock < 0 || flock(lock, LOCK_EX) != 0) return 1;
  int fd = open(argv[2], O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return 1;
  size_t n = strlen(argv[3]);
  char line[70000];
  if (n + 1 > sizeof line) return 2;
  memcpy(line, argv[3], n);
  line[n] = '\n';
  if (write(fd, line, n + 1) != (ssize_t)(n + 1)) return 1;
  close(fd);
  flock(lock, LOCK_UN);
  return 0;
}
C
cc -O2 -o "$work/append" "$work/append.c"

town=$work/town
"$bin/gt" install "$town" >/dev/null
export GT_TOWN=$town GT_ADDRESS=overseer
unset GT_DURABLE GT_LOG
body=$(printf 'x%.0s' $(seq 200))
mail=$town/mayor/mail
# The same line gt-mail writes, by its length: send one and copy it.
"$bin/gt-mail" send mayor -s bench -m "$body" >/dev/null
line=$(tail -n1 "$mail/inbox.jsonl")

# Rounds of the three, one after another, so a change in the machine's load
# falls on all of them alike.
for r in $(seq "$rounds"); do
  hyperfine -N --style none --warmup 10 --runs "$runs" --export-json "$work/round$r.json" \
    -n c "$work/append $mail/inbox.lock $mail/inbox.jsonl '$line'" \
    -n gt-mail "$bin/gt-mail send mayor -s bench -m $body" \
    -n gt "$bin/gt send mayor -s bench -m $body" >/dev/null
done
# Every line appended is a whole JSON record:
jq -e . "$mail/inbox.jsonl" >/dev/null
faults() { perf stat -x, -e page-faults "$@" 2>&1 >/dev/null | awk -F, '/page-faults/ { print $1 }'; }
if command -v perf >/dev/null; then
  pf_c=$(faults "$work/append" "$mail/inbox.lock" "$mail/inbox.jsonl" "$line")
  pf_mail=$(faults "$bin/gt-mail" send mayor -s bench -m "$body")
  pf_gt=$(faults "$bin/gt" send mayor -s bench -m "$body")
else
  pf_c=- pf_mail=- pf_gt=-
fi
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
# How install.sh linked them (statically where glibc's libc.a is installed).
linked=$(readelf -d "$bin/gt-mail" 2>/dev/null | grep -q NEEDED && echo "dynamically linked" || echo "statically linked")

# Median of all runs of each, and the median over rounds of each round's ratio.
jq -s -r '
  def med: sort | if length % 2 == 1 then .[length/2|floor] else (.[length/2-1] + .[length/2]) / 2 end;
  def times($n): [.[] | .results[] | select(.command == $n) | .times[]] | med;
  def ratio($n): [.[] | (.results | map({(.command): .median}) | add) | .[$n] / .c] | med;
  def cpu($n): [.[] | .results[] | select(.command == $n) | .user + .system] | med;
  "\(times("c")*1e3) \(times("gt-mail")*1e3) \(times("gt")*1e3) \(ratio("gt-mail")) \(ratio("gt")) \(cpu("c")*1e3) \(cpu("gt-mail")*1e3) \(cpu("gt")*1e3)"
' "$work"/round*.json > "$work/summary"
read -r c_ms mail_ms gt_ms mail_ratio gt_ratio c_cpu mail_cpu gt_cpu < "$work/summary"
fmt() { awk -v v="$1" 'BEGIN { printf "%.2f", v }'; }
verdict() { awk -v r="$1" -v l="$2" 'BEGIN { printf "%.2fx: %s", r, (r <= l ? "**met**" : "**MISSED**") }'; }

section=$work/section.md
{
  echo "<!-- send:begin (written by bench/send.sh; edit the script, not this) -->"
  echo "## Send against the kernel's work"
  echo
  echo "Run \`bench/send.sh\` ($(date -u +%Y-%m-%d), commit $(git rev-parse --short HEAD))."
  echo
  echo "**Machine:** $(nproc) cores, Linux $(uname -r), $(rustc --version | cut -d' ' -f1-2), $(cc --version | head -1), hyperfine $(hyperfine --version | cut -d' ' -f2). Load average before/after: $load_before / $load_after (other builds share the machine)."
  echo
  echo "**Method:** the binaries as install.sh installs them (copied from target/, see bench/section.sh), against a C program built by the script with \`cc -O2\` (dynamically linked, as cc links by default) opens and flocks the inbox's lock file, appends the same ${#line}-byte line that \`gt-mail send\` writes with one O_APPEND write, unlocks and exits. $rounds rounds, each of hyperfine -N (no shell) with 10 warm-ups and $runs runs of the C program, \`gt-mail send mayor -s bench -m <200 bytes>\` and \`gt send\` (the same; gastown's binaries as \`install.sh\` builds them, here $linked) in turn, all appending to one inbox; times are the medians of all runs, ratios the median over rounds of each round's median ratio. CPU is hyperfine's mean user + system time (the median over rounds), which a loaded machine inflates less than wall time. Page faults: \`perf stat -e page-faults\`, one run each."
  echo
  echo "| program | median | CPU (user + sys, mean) | page faults | against C (target) |"
  echo "|---|---|---|---|---|"
  echo "| C open + flock + append | $(fmt "$c_ms") ms | $(fmt "$c_cpu") ms | $pf_c | 1.00 |"
  echo "| \`gt-mail send\` | $(fmt "$mail_ms") ms | $(fmt "$mail_cpu") ms | $pf_mail | $(verdict "$mail_ratio" 1.3) (≤ 1.3x) |"
  echo "| \`gt send\` | $(fmt "$gt_ms") ms | $(fmt "$gt_cpu") ms | $pf_gt | $(verdict "$gt_ratio" 1.5) (≤ 1.5x) |"
  echo "<!-- send:end -->"
} > "$section"
if [ $quick = 1 ]; then
  cat "$section"
  exit 0
fi
replace_section send "$section"
echo "bench/send.sh: wrote the send section of BENCHMARKS.md"

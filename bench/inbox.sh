#!/usr/bin/env bash
# `gt inbox` against reading the inbox file once (cat) and against its peers,
# in one run: 10,000 unread messages, and 10 unread among 1,000,000. Writes the
# inbox section of BENCHMARKS.md. Not part of `cargo test`.
#
#   bench/inbox.sh            release build, then every measurement below
#   bench/inbox.sh --no-build measure the release binaries already built
#   bench/inbox.sh --quick    small counts, results to stdout only (a smoke run)
#
# Needs: cargo, hyperfine (apt install hyperfine), jq, python3 -m venv (peers).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
# shellcheck source=bench/section.sh
. bench/section.sh
bench_start inbox.sh "$@"
[ $quick = 1 ] && export GT_BENCH_QUICK=1
bench_needs inbox.sh hyperfine jq python3
work=$(mktemp -d "$root/target/bench-inbox.XXXXXX")
trap 'rm -rf "$work"' EXIT
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
unset GT_DURABLE
body=$(printf 'x%.0s' $(seq 200))
many=$([ $quick = 1 ] && echo 1000 || echo 10000)
huge=$([ $quick = 1 ] && echo 50000 || echo 1000000)
runs=$([ $quick = 1 ] && echo 10 || echo 100)

# A town whose mayor has $2 messages (300-byte lines, one `deliver`), all but
# the last $3 marked read.
town() {
  "$bin/gt" install "$1" >/dev/null
  awk -v n="$2" -v b="$body" 'BEGIN { for (i = 1; i <= n; i++) printf "{\"to\":\"mayor\",\"subject\":\"fill %d\",\"body\":\"%s\"}\n", i, b }' |
    GT_TOWN=$1 GT_ADDRESS=overseer "$bin/gt-mail" deliver >/dev/null
  local mail=$1/mayor/mail
  head -n "$(($2 - $3))" "$mail/inbox.jsonl" | cut -d'"' -f4 |
    awk '{ printf "{\"id\":\"%s\",\"state\":\"read\"}\n", $0 }' > "$mail/read.jsonl"
}
town "$work/many" "$many" "$many"
town "$work/huge" "$huge" 10
export GT_ADDRESS=mayor

# hyperfine -N: no shell between hyperfine and the command. Warm-up runs build
# each reader's cursor (the first read after an inbox is replaced reads it all).
measure() { # name town json
  local t=$1 out=$2
  shift 2
  GT_TOWN=$t hyperfine -N --style none --warmup 5 --runs "$runs" --export-json "$out" "$@" >/dev/null
}
measure "$work/many" "$work/many.json" \
  -n "cat inbox.jsonl" "cat $work/many/mayor/mail/inbox.jsonl" \
  -n "gt inbox" "$bin/gt inbox" \
  -n "gt inbox --all" "$bin/gt inbox --all" \
  -n "gt-mail inbox" "$bin/gt-mail inbox" \
  -n "gt-mail inbox --json" "$bin/gt-mail inbox --json" \
  -n "gt-mail inbox --all" "$bin/gt-mail inbox --all"
measure "$work/huge" "$work/huge.json" \
  -n "cat inbox.jsonl" "cat $work/huge/mayor/mail/inbox.jsonl" \
  -n "gt inbox" "$bin/gt inbox" \
  -n "gt-mail inbox" "$bin/gt-mail inbox" \
  -n "gt-mail inbox --json" "$bin/gt-mail inbox --json"
# Each lists exactly the unread ones:
[ "$(GT_TOWN=$work/many "$bin/gt-mail" inbox --json | wc -l)" = "$many" ]
[ "$(GT_TOWN=$work/huge "$bin/gt-mail" inbox --json | wc -l)" = 10 ]

bench/peers.sh "$work" "$bin" > "$work/peers.md"
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

rows() { # json label
  jq -r --arg what "$2" '
    (.results[] | select(.command == "cat inbox.jsonl") | .median) as $cat
    | .results[]
    | "| \($what): `\(.command)` | median \(.median*1e3*100|round/100) ms, p95 \(.times|sort|.[(length*0.95|floor)]*1e3*100|round/100) ms | \(if .command == "cat inbox.jsonl" then "1.00" else "\(.median/$cat*100|round/100)x cat" end) |"' "$1"
}
median() { jq -r --arg c "$2" '.results[] | select(.command == $c) | .median*1e3' "$1"; }
verdict() { # value limit
  awk -v v="$1" -v l="$2" 'BEGIN { printf "%s (%.2f ms against %s ms)", (v < l ? "**met**" : "**missed**"), v, l }'
}
peer_ratio() { # the slowest-to-beat peer read, over gt-mail inbox
  sed -n 's/^| `\(agent-board check-messages\|interagentmail inbox\)[^|]*| \([0-9.]*\) ms | \([0-9.]*\)x |$/\3/p' "$work/peers.md" | sort -n | head -1
}
many_gt=$(median "$work/many.json" "gt inbox")
many_cat=$(median "$work/many.json" "cat inbox.jsonl")
many_all=$(median "$work/many.json" "gt inbox --all")
many_mail=$(median "$work/many.json" "gt-mail inbox")
many_mail_all=$(median "$work/many.json" "gt-mail inbox --all")
huge_gt=$(median "$work/huge.json" "gt inbox")
ratio=$(peer_ratio)

section=$work/section.md
{
  echo "<!-- inbox:begin (written by bench/inbox.sh; edit the script, not this) -->"
  echo "## Inbox reads"
  echo
  echo "Run \`bench/inbox.sh\` ($(date -u +%Y-%m-%d), commit $(git rev-parse --short HEAD))."
  echo
  echo "**Machine:** $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores, Linux $(uname -r), $(df -T "$root/target" | awk 'NR==2 {print $2}') (files under target/), $(rustc --version | cut -d' ' -f1-2), hyperfine $(hyperfine --version | cut -d' ' -f2). Load average before/after: $load_before / $load_after (other builds may share the machine)."
  echo
  echo "**Method:** whole-process runs with hyperfine -N (no shell), $runs runs after 5 warm-ups (which build the reader's cursor), output to /dev/null; inboxes of 300-byte lines made with one \`gt-mail deliver\`, read marks written for all but the unread ones. \`cat\` is reading the whole file once. Peers: bench/peers.sh in the same run (PyPI, throwaway venv)."
  echo
  echo "| measurement | result | against cat |"
  echo "|---|---|---|"
  rows "$work/many.json" "$many unread of $many"
  rows "$work/huge.json" "10 unread of $huge"
  echo
  echo "Targets (issue 13):"
  echo
  echo "- \`gt inbox\` with $many unread under 15 ms: $(verdict "$many_gt" 15)."
  # Like for like: each binary's unread listing against its own --all.
  slower() { # unread all
    awk -v g="$1" -v a="$2" 'BEGIN { printf "%s (%.2f ms against %.2f ms)", (g <= a ? "**met**" : "**missed**"), g, a }'
  }
  echo "- never slower than reading the whole file once (\`gt inbox --all\`, which parses every line; cat of the file takes $(awk -v c="$many_cat" 'BEGIN { printf "%.2f", c }') ms): $(slower "$many_gt" "$many_all")."
  echo "- the same for \`gt-mail inbox\` against \`gt-mail inbox --all\`: $(slower "$many_mail" "$many_mail_all")."
  echo "- 10 unread of $huge under 2 ms (O(new messages)): $(verdict "$huge_gt" 2)."
  echo "- at least 20x faster than each peer: $(awk -v r="$ratio" 'BEGIN { printf "%s (the closest peer is %sx slower)", (r >= 20 ? "**met**" : "**missed**"), r }')."
  echo
  # shellcheck disable=SC2016 # backquotes are Markdown here
  echo 'With every message unread, the unread listing and `--all` each read and parse every line once: the same work but for the read state `--all` looks up per message, so the two are within this machine'"'"'s run-to-run noise of each other (a few per cent either way), and a verdict above can differ from one run to the next.'
  echo
  cat "$work/peers.md"
  echo "<!-- inbox:end -->"
} > "$section"

if [ $quick = 1 ]; then
  cat "$section"
  exit 0
fi
replace_section inbox "$section"
echo "bench/inbox.sh: wrote the inbox section of BENCHMARKS.md"

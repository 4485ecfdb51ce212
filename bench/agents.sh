#!/usr/bin/env bash
# Real agent runtimes (Claude Code, Codex) started by gt spawn against the
# scripted model server on 127.0.0.1: spawn -> first request at the model,
# spawn -> runtime ready, and gt inject -> request at the model, medians over
# 10 spawns each (examples/agent_bench.rs drives them). Writes the agents
# section of BENCHMARKS.md. Not part of `cargo test`. The runtimes come from
# GT_TEST_AGENT_DIR (default ~/.cache/gastown-agents, as .ci/run installs them);
# a missing one is reported in the section, not measured.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=bench/section.sh disable=SC1091
. "$root/bench/section.sh"
runs=10
# --no-build: measure the release binaries already built (as installed).
# The driver is a dev build: it only polls, types and timestamps (a release
# example would build every dev-dependency in release too).
bench_start agents.sh "$@"
[ "${1:-}" = --no-build ] || cargo build --example agent_bench --locked -q
agents=${GT_TEST_AGENT_DIR:-$HOME/.cache/gastown-agents}/node_modules/.bin
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export GT_TOWN=$work/town PATH="$bin:$agents:$PATH"

git init -q --bare -b main "$work/origin.git"
git clone -q "$work/origin.git" "$work/seed" 2>/dev/null
git -C "$work/seed" -c user.name=b -c user.email=b@b commit -q --allow-empty -m init
git -C "$work/seed" push -q origin HEAD:main
gt install "$GT_TOWN" >/dev/null

rows=()
for preset in claude codex; do
  if ! version=$("$agents/$preset" --version 2>/dev/null); then
    rows+=("| $preset | not measured: $agents/$preset does not run | | | |")
    continue
  fi
  gt rig add "$preset" "$work/origin.git" >/dev/null
  out=$("$root/target/debug/examples/agent_bench" "$preset" "$runs" "$preset" "$work")
  gt stop --rig "$preset" >/dev/null 2>&1 || true
  rows+=("$(python3 - "$out" "$version" <<'PY'
import json, statistics, sys
r = json.loads(sys.argv[1])
def cell(k):
    v = sorted(r[k])
    return "%.0f ms (%.0f-%.0f)" % (statistics.median(v), v[0], v[-1])
print("| %s (%s) | %s | %s | %s | %d |" % (r["preset"], sys.argv[2], cell("first_request_ms"),
      cell("ready_ms"), cell("nudge_ms"), len(r["nudge_ms"])))
PY
)")
done

section=$work/section.md
{
  echo "<!-- agents:begin (written by bench/agents.sh; edit the script, not this) -->"
  echo "## Real agents"
  echo
  echo "Run \`bench/agents.sh $*\` ($(date -u +%F), commit $(git rev-parse --short HEAD); binaries built $(date -u -r "$bin/gt" '+%F %H:%M UTC'))."
  echo
  echo "**Machine:** $(nproc) cores, $(uname -r); load average before: $(cut -d' ' -f1-3 /proc/loadavg)."
  echo
  echo "**Method:** for each preset, $runs polecats, each new (\`gt spawn --name\`, its clone made by the spawn), spawned in turn on a town of one rig, release build; the model is the scripted server of the tests (tests/it/model.rs) on 127.0.0.1, answering every turn at once with a short text, run by the driver (a dev build of examples/agent_bench.rs). *First request*: from the start of \`gt spawn\` to the runtime's first turn request at the model (the first prompt). *Ready*: from the same start until the preset's screen reader sees the runtime at its prompt with the first prompt taken and the input box empty (polled every 5 ms through tmux). *Nudge*: from the start of \`gt inject\` at the ready prompt to the request carrying the line at the model. Each polecat is killed after its nudge. Median (min-max) over the runs."
  echo
  echo "| runtime | spawn -> first request | spawn -> ready | nudge -> request | runs |"
  echo "| --- | --- | --- | --- | --- |"
  printf '%s\n' "${rows[@]}"
  echo "<!-- agents:end -->"
} > "$section"
replace_section agents "$section"
cat "$section"

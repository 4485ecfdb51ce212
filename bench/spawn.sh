#!/usr/bin/env bash
# `gt spawn` of brand-new polecats against a plain `git clone` of the same
# origin, interleaved in one run. Writes the spawn section of BENCHMARKS.md.
# Not part of `cargo test`.
#
#   bench/spawn.sh              release build, then the measurements
#   bench/spawn.sh --no-build   measure the release binaries already built
#   bench/spawn.sh --quick      5 pairs, results to stdout only
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=bench/section.sh
. bench/section.sh
bench_start spawn.sh "$@"
bench_needs spawn.sh python3
work=$(mktemp -d "$root/target/bench-spawn.XXXXXX")
trap 'rm -rf "$work"' EXIT
# The process backend: the session is a plain child, no tmux server in the numbers.
export GT_TOWN=$work/town PATH="$bin:$PATH" GT_SESSION_BACKEND=process
pairs=$([ $quick = 1 ] && echo 5 || echo 30)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

# The origin: this repository, as a bare clone (a real project's size).
git clone -q --bare "$root" "$work/origin.git"
files=$(git -C "$work/origin.git" ls-tree -r HEAD | wc -l)
gt install "$GT_TOWN" >/dev/null
gt rig add bench "$work/origin.git" >/dev/null
cfg=$GT_TOWN/bench/config.json
python3 - "$cfg" "$pairs" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c["max_workers"] = int(sys.argv[2]) + 1
json.dump(c, open(sys.argv[1], "w"))
PY
for i in $(seq "$pairs"); do
  gt issue --rig bench create "work $i" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])'
done > "$work/issues"

# Alternating: a clone, then a spawn of a new polecat (which clones the same
# origin), each timed from start to exit; the agent only sleeps.
python3 - "$work" "$pairs" > "$work/times" <<'PY'
import json, os, signal, subprocess, sys, time
work, pairs = sys.argv[1], int(sys.argv[2])
issues = open(os.path.join(work, "issues")).read().split()
origin = os.path.join(work, "origin.git")
def timed(argv):
    t = time.perf_counter()
    out = subprocess.run(argv, check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return time.perf_counter() - t, out.stdout
for i in range(pairs):
    c, _ = timed(["git", "clone", "--quiet", "--", origin, os.path.join(work, "plain%d" % i)])
    s, out = timed(["gt", "spawn", "--issue", issues[i], "--name", "P%d" % i,
                    "--agent", "exec sleep 1000", "--json"])
    # The session leader's process group: the shell that records the exit
    # status and the agent under it (a kill of the leader alone left the
    # agent running).
    pid = int(json.loads(out)["session"].split(":")[1])
    os.killpg(pid, signal.SIGTERM)
    print("%.6f %.6f" % (c, s))
PY
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
read -r clone_ms spawn_ms ratio < <(python3 - "$work/times" <<'PY'
import statistics, sys
rows = [tuple(map(float, l.split())) for l in open(sys.argv[1])]
c = statistics.median(r[0] for r in rows) * 1e3
s = statistics.median(r[1] for r in rows) * 1e3
print("%.1f %.1f %.2f" % (c, s, statistics.median(r[1] / r[0] for r in rows)))
PY
)

section=$work/section.md
{
  echo "<!-- spawn:begin (written by bench/spawn.sh; edit the script, not this) -->"
  echo "## Spawn"
  echo
  echo "Run \`bench/spawn.sh\` ($(date -u +%Y-%m-%d), commit $(git rev-parse --short HEAD))."
  echo
  echo "**Machine:** $(nproc) cores, Linux $(uname -r), $(git --version). Load average before/after: $load_before / $load_after (other builds share the machine)."
  echo
  echo "**Method:** the origin is a bare clone of this repository ($files files), on the same disk; $pairs pairs run alternately, each a plain \`git clone --quiet\` of the origin into a new directory, then \`gt spawn --issue <new issue> --name <new polecat> --agent 'exec sleep 1000'\` (release build, process backend, native tracker), each timed from start to exit; the ratio is the median of the pairs' ratios."
  echo
  echo "| measurement | median |"
  echo "|---|---|"
  echo "| \`git clone\` of the origin | $clone_ms ms |"
  echo "| \`gt spawn\` of a new polecat (clone, home, claim, session) | $spawn_ms ms |"
  echo "| spawn / clone (target ≤ 2) | $ratio: $(awk -v r="$ratio" 'BEGIN { print (r <= 2 ? "**met**" : "**MISSED**") }') |"
  echo
  echo "A new polecat's clone is put on its branch in process (libgit2: the branch at HEAD, HEAD pointed at it) with no \`git fetch\` or \`git checkout -B\` after it, and the tmux backend is chosen by looking tmux up on PATH, not by running \`tmux -V\`."
  echo "<!-- spawn:end -->"
} > "$section"
if [ $quick = 1 ]; then
  cat "$section"
  exit 0
fi
replace_section spawn "$section"
echo "bench/spawn.sh: wrote the spawn section of BENCHMARKS.md"

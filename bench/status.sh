#!/usr/bin/env bash
# gt status and gt doctor on a large town (20 rigs x 30 polecats, every
# polecat with a live recorded session); writes the status section of
# BENCHMARKS.md. Not part of `cargo test`. Needs hyperfine and python3.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=bench/section.sh disable=SC1091
. "$root/bench/section.sh"
# --no-build: measure the release binaries already built (as installed).
bench_start status.sh "$@"
work=$(mktemp -d)
sleepers=()
cleanup() {
  [ ${#sleepers[@]} -gt 0 ] && kill "${sleepers[@]}" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
export GT_TOWN=$work/town PATH="$bin:$PATH"

# One origin, 20 rigs; 30 polecat homes per rig made by hand, as a shell
# participant may (protocol/README.md), each recording the same live session.
git init -q --bare -b main "$work/origin.git"
git clone -q "$work/origin.git" "$work/seed" 2>/dev/null
git -C "$work/seed" -c user.name=b -c user.email=b@b commit -q --allow-empty -m init
git -C "$work/seed" push -q origin HEAD:main
gt install "$GT_TOWN" >/dev/null
town=$(cd "$GT_TOWN" && pwd -P)
for r in $(seq -w 1 20); do
  gt rig add "rig$r" "$work/origin.git" >/dev/null
  for p in $(seq -w 1 30); do
    h=$GT_TOWN/rig$r/polecats/P$p
    mkdir -p "$h/mail"
    # Each its own session, as the protocol's shell recipe starts one: the
    # leader carries the agent's GT_TOWN and GT_ADDRESS.
    env GT_TOWN="$town" GT_ADDRESS="rig$r/P$p" sleep 100000 & sleepers+=($!)
    start=$(awk '{ sub(/^.*\) /, ""); split($0, f, " "); print f[20] }' "/proc/$!/stat")
    printf '{"id":"msg-%s","from":"mayor","to":"rig%s/P%s","subject":"s","body":"b","timestamp":"2026-11-25T09:00:00Z"}\n' "$r$p" "$r" "$p" > "$h/mail/inbox.jsonl"
    printf '{"role":"polecat","status":"working","issue":"r-%s","session":"proc:%s:%s","generation":1,"started_at":"2026-11-25T09:00:00Z"}\n' "$p" "$!" "$start" > "$h/state.json"
  done
done
agents=$(gt status --json | python3 -c 'import json,sys; r=json.load(sys.stdin); print(len(r["agents"]), sum(1 for a in r["agents"] if a["session_alive"]))')

hyperfine -N --warmup 5 --runs 50 --export-json "$work/status.json" 'gt status --json' >/dev/null 2>&1
status_ms=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"][0]; print("median %.1f ms, max %.1f ms" % (r["median"]*1e3, r["max"]*1e3))' "$work/status.json")

# Redraw latency: time from a state change (a rename, as the tools write)
# to the next frame on `gt status --watch --json`'s stdout.
watch_ms=$(python3 - "$GT_TOWN" <<'PY'
import json, os, subprocess, sys, time
town = sys.argv[1]
p = subprocess.Popen(["gt", "status", "--watch", "--json"], stdout=subprocess.PIPE)
p.stdout.readline()
home = os.path.join(town, "rig01/polecats/P01")
lat = []
for i in range(50):
    tmp = os.path.join(home, ".state.json.tmp")
    with open(tmp, "w") as f:
        json.dump({"role": "polecat", "status": "working", "issue": "r-%d" % i, "generation": 1}, f)
    t = time.perf_counter()
    os.rename(tmp, os.path.join(home, "state.json"))
    while True:
        line = p.stdout.readline()
        if '"r-%d"' % i in line.decode():
            break
    lat.append((time.perf_counter() - t) * 1e3)
p.kill()
lat.sort()
print("p50 %.1f ms, p99 %.1f ms" % (lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))]))
PY
)

t0=$(date +%s%N)
timeout 120 gt doctor --json >/dev/null 2>&1 && doctor_rc=0 || doctor_rc=$?
doctor_ms=$(( ($(date +%s%N) - t0) / 1000000 ))

section=$work/section.md
{
  echo "<!-- status:begin (written by bench/status.sh; edit the script, not this) -->"
  echo "## Status and doctor"
  echo
  echo "Run \`bench/status.sh $*\` ($(date -u +%F), commit $(git rev-parse --short HEAD); binaries built $(date -u -r "$bin/gt" '+%F %H:%M UTC'))."
  echo
  echo "**Machine:** $(nproc) cores, $(uname -r); load average before: $(cut -d' ' -f1-3 /proc/loadavg)."
  echo
  echo "**Method:** a town of 20 rigs x 30 polecats (homes written by hand, without clones, so the doctor reports 600 missing clones and exits 1; each recording a live process session of its own, its leader carrying the GT_TOWN and GT_ADDRESS a start gives it: ${agents% *} agents, ${agents#* } live), release build; \`gt status --json\` timed by hyperfine -N over 50 runs after 5 warm-ups; the --watch redraw is timed from a state.json rename to the frame that shows it, over 50 changes; \`gt doctor --json\` is run once."
  echo
  echo "| measurement | result | target |"
  echo "|---|---|---|"
  echo "| \`gt status --json\`, 600 polecats with liveness | $status_ms | < 50 ms |"
  echo "| \`gt status --watch\` redraw after a change | $watch_ms | p99 < 50 ms |"
  echo "| \`gt doctor --json\` on the same town | $doctor_ms ms (exit $doctor_rc) | reported; bounded waits |"
  echo "<!-- status:end -->"
} > "$section"

replace_section status "$section"
echo "bench/status.sh: wrote the status section of BENCHMARKS.md"

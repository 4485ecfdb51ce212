#!/usr/bin/env bash
# Federation benchmarks; writes the federation section of BENCHMARKS.md.
# Not part of `cargo test`. Loopback only: a private sshd on 127.0.0.1 and a
# random port stands in for machine b, as in tests/it/federation.rs.
#
#   bench/federation.sh             release build, then the measurements below
#   bench/federation.sh --quick     small counts, results to stdout only
#   ... --no-build                  measure the release binaries already built
#
# Bounded: every gt runs under timeout(1) (GT_REMOTE_TIMEOUT=20s inside), so
# a hung ssh ends the run with an error instead of waiting forever.
#
# Measures (1) `gt send b:mayor` over a kept ssh connection (ControlMaster)
# against a local `gt send mayor`, and (2) `gt mail flush` of a 10,000-message
# spool: its time and its ssh round trips (one per batch of 2,000).
#
# Needs: cargo, ssh, ssh-keygen, /usr/sbin/sshd (openssh-server), jq.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
# shellcheck source=bench/section.sh disable=SC1091
. "$root/bench/section.sh"
bench_start federation.sh "$@"
for t in ssh ssh-keygen /usr/sbin/sshd jq; do
  command -v "$t" >/dev/null || { echo "bench/federation.sh: needs $t" >&2; exit 2; }
done

gt() { timeout 120 "$bin/gt" "$@"; }
work=$(mktemp -d "$root/target/bench-fed.XXXXXX")
sshd_pid=
cleanup() {
  if [ -n "$sshd_pid" ]; then kill "$sshd_pid" 2>/dev/null || true; fi
  # The ControlPersist master, if any, ends with its socket.
  ssh -o ControlPath="$work/cm" -O exit 127.0.0.1 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

# A private sshd: own host key, own config, forced commands only.
ssh-keygen -q -t ed25519 -N '' -f "$work/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$work/key_a"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/sshd_config" <<EOF
Port $port
ListenAddress 127.0.0.1
HostKey $work/host_key
AuthorizedKeysFile $work/authorized_keys
PidFile $work/sshd.pid
UsePAM no
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
LogLevel VERBOSE
EOF
echo "[127.0.0.1]:$port $(cat "$work/host_key.pub")" > "$work/known_hosts"
[ "$(id -u)" = 0 ] && mkdir -p /run/sshd

# Two towns: a sends, b receives.
gt install "$work/a" >/dev/null
gt install "$work/b" >/dev/null
opts=$(jq -cn --arg kh "$work/known_hosts" --arg cm "$work/cm" \
  '["-F","/dev/null","-o","UserKnownHostsFile=\($kh)","-o","StrictHostKeyChecking=yes",
    "-o","IdentitiesOnly=yes","-o","ControlMaster=auto","-o","ControlPath=\($cm)",
    "-o","ControlPersist=120"]')
registry() { # me other other_town grants
  jq -n --arg me "$1" --arg o "$2" --arg t "$3" --argjson port "$port" \
    --arg id "$work/key_a" --argjson opts "$opts" --argjson g "$4" \
    '{version:1, machine:$me, machines:{($o):{host:"127.0.0.1", port:$port,
      identity:$id, town:$t, ssh_options:$opts, grants:$g}}}'
}
registry a b "$work/b" '[]' > "$work/a/config/federation.json"
registry b a "$work/a" '["deliver"]' > "$work/b/config/federation.json"
GT_TOWN=$work/b gt machines authorize a "$work/key_a.pub" > "$work/authorized_keys"
/usr/sbin/sshd -f "$work/sshd_config" -E "$work/sshd.log"
for _ in $(seq 100); do [ -s "$work/sshd.pid" ] && break; sleep 0.05; done
sshd_pid=$(cat "$work/sshd.pid")

export GT_TOWN=$work/a GT_ADDRESS=overseer GT_REMOTE_TIMEOUT=20s
unset GT_DURABLE
body=$(printf 'x%.0s' $(seq 200))

# Median wall time in ms of running "$@" $runs times.
runs=$([ $quick = 1 ] && echo 20 || echo 300)
median_ms() {
  local t0 t1 out=()
  for _ in $(seq "$runs"); do
    t0=$(date +%s%N); "$@" >/dev/null; t1=$(date +%s%N)
    out+=($(( (t1 - t0) / 1000 )))
  done
  printf '%s\n' "${out[@]}" | sort -n | awk '{a[NR]=$1} END {printf "%.2f", a[int((NR+1)/2)]/1000}'
}

# sshd's own count: a connection is a key exchange ("Accepted publickey"), a
# session is one remote command over a connection ("Starting session").
count() { grep -c "$1" "$work/sshd.log" || true; }
gt send b:mayor -s warm -m up >/dev/null # opens the ControlMaster
ssh -F /dev/null -o ControlPath="$work/cm" -O check 127.0.0.1 2>/dev/null ||
  { echo "bench: no ControlMaster at $work/cm after the first send" >&2; exit 1; }
local_ms=$(median_ms gt send mayor -s bench -m "$body")
conn0=$(count 'Accepted publickey')
remote_ms=$(median_ms gt send b:mayor -s bench -m "$body")
send_conns=$(( $(count 'Accepted publickey') - conn0 ))
# The ssh part alone: \`gt ping\` (no grant, no mail) through the same master.
ping_ms=$(median_ms timeout 60 ssh -o BatchMode=yes -F /dev/null \
  -o UserKnownHostsFile="$work/known_hosts" -o StrictHostKeyChecking=yes \
  -o IdentitiesOnly=yes -o ControlMaster=auto -o ControlPath="$work/cm" \
  -o ControlPersist=120 -T -p "$port" -i "$work/key_a" -- 127.0.0.1 gt ping)
got=$(wc -l < "$work/b/mayor/mail/inbox.jsonl")
[ "$got" = $((runs + 1)) ] || { echo "bench: b holds $got messages, expected $((runs + 1))" >&2; exit 1; }

# A 10,000-message spool, then one flush.
n=$([ $quick = 1 ] && echo 2000 || echo 10000)
jq -cn --arg body "$body" --argjson n "$n" \
  'range($n) | {id:"bench-\(.)", from:"a:overseer", to:"mayor", subject:"spooled",
    body:$body, timestamp:"2026-11-25T09:00:00Z"}' > "$work/a/federation/outbox/b.jsonl"
sess0=$(count 'Starting session')
t0=$(date +%s%N)
gt mail flush b --json > "$work/flush.json"
t1=$(date +%s%N)
flush_sessions=$(( $(count 'Starting session') - sess0 ))
flush_ms=$(( (t1 - t0) / 1000000 ))
trips=$(jq -r .round_trips "$work/flush.json")
delivered=$(jq -r '.delivered | length' "$work/flush.json")
[ "$delivered" = "$n" ] || { echo "bench: flush delivered $delivered of $n" >&2; exit 1; }
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

ratio=$(awk -v r="$remote_ms" -v l="$local_ms" 'BEGIN {printf "%.1f", r/l}')
per_msg=$(awk -v t="$flush_ms" -v n="$n" 'BEGIN {printf "%.0f", t*1000/n}')
table=$(cat <<EOF
| measurement | result | ratio / note |
|---|---|---|
| \`gt send mayor\` (local, whole process, 300-byte message) | median ${local_ms} ms | 1.00 |
| \`gt send b:mayor\` (ssh to 127.0.0.1, ControlMaster kept open) | median ${remote_ms} ms | ${ratio}x the local send's time; sshd accepted ${send_conns} new connection(s) for these ${runs} sends |
| \`ssh b gt ping\` alone, through the same master (no gt on this side) | median ${ping_ms} ms | the ssh and forced-command share of a send |
| \`gt mail flush b\`, ${n} spooled messages | ${flush_ms} ms, ${trips} ssh round trips (the flush's count), ${flush_sessions} sshd sessions (sshd's count) | ${per_msg} µs per message; one round trip per 2,000-record batch, not per message |
EOF
)
if [ $quick = 1 ]; then
  echo "$table"
  exit 0
fi

section=$work/section.md
{
  echo "<!-- federation:begin (written by bench/federation.sh; edit the script, not this) -->"
  echo "## Federation"
  echo
  echo "Run \`bench/federation.sh\` ($(date -u +%Y-%m-%d), commit $(git rev-parse --short HEAD))."
  echo
  echo "**Machine:** $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores, Linux $(uname -r), $(ssh -V 2>&1). Load average before/after: $load_before / $load_after (other builds may share the machine)."
  echo
  echo "**Method:** two towns on this machine; b is reached through a private sshd on 127.0.0.1 with a forced command (\`gt remote\`), as in tests/it/federation.rs. Sends are medians of $runs whole-process runs timed by the script (date +%s%N around each), after one send that opens the ControlMaster (ControlPersist=120). The flush is one \`gt mail flush b\` of a spool of $n generated records; the round trips are the flush's own count (\`--json\`), checked against sshd's: its VERBOSE log has one \"Accepted publickey\" line per connection and one \"Starting session\" line per remote command."
  echo
  echo "$table"
  echo
  cat <<'NOTES'
Reading the numbers:

- ControlMaster works through a machine's `ssh_options`: gastown runs
  `ssh -o BatchMode=yes <ssh_options> -o ConnectTimeout=10 ... -- <host>
  <wire command>`, and ssh honours `-o ControlMaster=auto -o
  ControlPath=... -o ControlPersist=...` there like any option (the first
  value of an option wins, and gastown sets none of these). The script checks
  the master with `ssh -O check` after the first send, and sshd's log shows
  how many connections (key exchanges) the timed sends opened. The master
  forked by the first ssh keeps that ssh's stderr open; the round trip stops
  waiting for it 2s after ssh exits (src/federation/ssh.rs), so only the
  first send of a master pays that.

- A federated send is the local send's process start plus: the spool append,
  one ssh through the kept master (a new session on an open connection, no
  handshake), and on the other side sshd starting `gt remote` through the
  user's shell, its id check of the target inbox and an fsynced append.
  Without ControlMaster each send pays a full key exchange as well. The
  user's shell is part of every remote command: on a machine whose
  `~/.bashrc` runs `pyenv init` (this one's), that is most of the
  `ssh b gt ping` time.
- The receiver's duplicate check reads the target inbox (and archive) once
  per round trip, so a send to an inbox with many messages costs more; a
  flush pays it once per 2,000 records.
NOTES
  echo "<!-- federation:end -->"
} > "$section"

replace_section federation "$section"
echo "bench/federation.sh: wrote the federation section of BENCHMARKS.md"

#!/usr/bin/env bash
# The peers a user would pick instead of gt-mail, installed from PyPI into a
# throwaway venv: agent-postbox 0.3.1 (`agent-board post` / `check-messages`)
# and cgl-interagentmail 1.4.0 (`interagentmail send` / `inbox`). Same sends
# and one inbox read with 10,000 messages present, each against gt-mail in the
# same run. Prints Markdown; bench/mail.sh --peers calls it.
#
#   bench/peers.sh WORKDIR BINDIR     (BINDIR holds release gt, gt-mail)
set -euo pipefail
work=$1/peers bin=$2
quick=${GT_BENCH_QUICK:+1}
sends=$([ -n "$quick" ] && echo 10 || echo 100)
present=$([ -n "$quick" ] && echo 1000 || echo 10000)
mkdir -p "$work"
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet --disable-pip-version-check \
  agent-postbox==0.3.1 cgl-interagentmail==1.4.0
py=$work/venv/bin
body=$(printf 'x%.0s' $(seq 200))

# agent-postbox: two agents and a channel between them.
export AGENT_BOARD_HOME=$work/board
"$py/agent-board" register --id alice --name alice >/dev/null
"$py/agent-board" register --id bob --name bob >/dev/null
chan=$("$py/agent-board" create --id alice --to bob --topic bench --json | jq -r .channel)
"$py/agent-board" accept --id bob "$chan" >/dev/null

# cgl-interagentmail: two projects.
export INTERAGENTMAIL_HOME=$work/iam
for p in alice bob; do
  mkdir -p "$work/projects/$p"
  "$py/interagentmail" init --project-root "$work/projects/$p" >/dev/null
done

# gastown: a fresh town.
export GT_TOWN=$work/town GT_ADDRESS=overseer
unset GT_DURABLE
"$bin/gt" install "$GT_TOWN" >/dev/null

hyperfine -N --style none --warmup 3 --runs "$sends" --export-json "$work/send.json" \
  -n 'agent-board post' "$py/agent-board post --id alice --text $body $chan" \
  -n 'interagentmail send' "$py/interagentmail send --project-root $work/projects/alice --to bob --subject bench --body $body" \
  -n 'gt-mail send' "$bin/gt-mail send mayor -s bench -m $body" >/dev/null

# Fill every inbox to $present unread messages, the way each tool stores them.
python3 - "$work" "$chan" "$present" "$body" <<'PY'
import json, os, sys, copy
work, chan, present, body = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
msgs = os.path.join(work, "board/channels", chan, "messages")
have = sorted(os.listdir(msgs))
seq = int(have[-1].split(".")[0])
proto = json.load(open(os.path.join(msgs, have[-1])))
while len(os.listdir(msgs)) < present:
    seq += 1
    m = dict(proto, seq=seq, text=body)
    json.dump(m, open(os.path.join(msgs, "%06d.json" % seq), "w"), indent=2)
inbox = os.path.join(work, "iam/mailboxes/bob/inbox")
files = sorted(os.listdir(inbox))
proto = json.load(open(os.path.join(inbox, files[0])))
i = 0
while len(os.listdir(inbox)) < present:
    i += 1
    m = copy.deepcopy(proto)
    m["id"] = "%s-%06d" % (proto["id"], i)
    json.dump(m, open(os.path.join(inbox, m["id"] + ".json"), "w"), indent=2)
PY
have=$(wc -l < "$GT_TOWN/mayor/mail/inbox.jsonl")
for i in $(seq $((present - have))); do
  printf '{"to":"mayor","subject":"fill %d","body":"%s"}\n' "$i" "$body"
done | "$bin/gt-mail" deliver >/dev/null

# Reads that do not change state, so every run does the same work.
hyperfine -N --style none --warmup 2 --runs "$([ -n "$quick" ] && echo 3 || echo 10)" --export-json "$work/read.json" \
  -n 'agent-board check-messages --no-advance' "$py/agent-board check-messages --id bob --no-advance --json" \
  -n 'interagentmail inbox' "$py/interagentmail inbox --project-root $work/projects/bob" \
  -n 'gt-mail inbox' "$bin/gt-mail --as mayor inbox" \
  -n 'gt-mail inbox --json' "$bin/gt-mail --as mayor inbox --json" >/dev/null
# Each lists every message as unread:
[ "$("$bin/gt-mail" --as mayor inbox --json | wc -l)" = "$present" ]
[ "$("$py/interagentmail" inbox --project-root "$work/projects/bob" | grep -c '^')" -ge "$present" ]

echo "### Peers (PyPI, throwaway venv; $sends sends each, then one inbox read with $present unread messages present)"
echo
echo "| peer operation | median | gt-mail is this many times faster |"
echo "|---|---|---|"
jq -r '
  (.results[] | select(.command == "gt-mail send") | .median) as $ours
  | .results[] | "| `\(.command)` | \(.median*1e3*100|round/100) ms | \(if .command == "gt-mail send" then "—" else "\(.median/$ours*10|round/10)x" end) |"' "$work/send.json"
jq -r '
  (.results[] | select(.command == "gt-mail inbox") | .median) as $ours
  | .results[] | "| `\(.command)` (\($present) messages) | \(.median*1e3*100|round/100) ms | \(if (.command|startswith("gt-mail")) then "—" else "\(.median/$ours*10|round/10)x" end) |"' --arg present "$present" "$work/read.json"

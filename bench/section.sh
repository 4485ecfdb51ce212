# shellcheck shell=bash
# shellcheck disable=SC2034 # quick and bin are for the sourcing script
# Sourced by the bench scripts: replace_section NAME FILE puts FILE (which
# begins with <!-- NAME:begin ... --> and ends with <!-- NAME:end -->) in
# place of that section of BENCHMARKS.md, or appends it; the rest is kept.
replace_section() {
  local name=$1 section=$2 bm
  bm="$(dirname "${BASH_SOURCE[0]}")/../BENCHMARKS.md"
  if grep -q "<!-- $name:begin" "$bm"; then
    awk -v f="$section" -v b="<!-- $name:begin" -v e="<!-- $name:end -->" '
      index($0, b) == 1 { while ((getline l < f) > 0) print l; skip=1; next }
      index($0, e) == 1 { skip=0; next }
      !skip' "$bm" > "$section.bm" && cat "$section.bm" > "$bm"
  else
    { echo; cat "$section"; } >> "$bm"
  fi
}

# bench_start SCRIPT ARGS...: the flags every bench takes. Sets quick (1 with
# --quick) and bin (target/bench-bin), builds the release binaries in
# target/HOST/release as install.sh does (statically linked where it can)
# unless --no-build, and copies them to bin as install.sh installs them.
bench_start() {
  local script=$1 a build=1 root built b
  shift
  quick=0
  for a in "$@"; do
    case $a in
      --no-build) build=0 ;;
      --quick) quick=1 ;;
      *) echo "usage: bench/$script [--no-build] [--quick]" >&2; exit 2 ;;
    esac
  done
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  built="$root/target/$(rustc -vV | sed -n 's/^host: //p')/release"
  if [ "$build" = 1 ]; then "$root/install.sh" --build-only >/dev/null; fi
  # Measured as installed: copies (install(1), like install.sh's put). The
  # same bytes as the linker left them start slower: a file written front to
  # back sits in the page cache in larger pieces, so a start faults fewer
  # times (gt-mail send: 61 faults against 74, about a fifth of its time).
  bin="$root/target/bench-bin"
  mkdir -p "$bin"
  for b in "$built"/gt "$built"/gt-*; do
    if [ -f "$b" ] && [ -x "$b" ]; then
      install -m 755 "$b" "$bin/.tmp" && mv -f "$bin/.tmp" "$bin/${b##*/}"
    fi
  done
}

# bench_needs SCRIPT TOOL...: exit 2 naming the first TOOL not on PATH.
bench_needs() {
  local script=$1 t
  shift
  for t in "$@"; do
    command -v "$t" >/dev/null || { echo "bench/$script: needs $t" >&2; exit 2; }
  done
}

# shellcheck shell=bash
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

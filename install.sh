#!/usr/bin/env bash
# Build gastown and install its binaries and man pages (and, with --systemd,
# its systemd user units). Safe to re-run: every file is replaced atomically.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: ./install.sh [--prefix DIR] [--systemd] [--from DIR]
       ./install.sh --build-only

Builds gastown (cargo build --release --locked --target HOST, statically
linked on Linux with glibc when its libc.a is installed; the binaries are in
target/HOST/release) and installs:
  DIR/bin/gt, DIR/bin/gt-*         every binary of the package
  DIR/share/man/man1/*.1           the man pages from man/
  shell completions for gt (gt completions SHELL), where each shell looks:
    ${XDG_DATA_HOME:-~/.local/share}/bash-completion/completions/gt
    ${XDG_DATA_HOME:-~/.local/share}/zsh/site-functions/_gt
    ${XDG_CONFIG_HOME:-~/.config}/fish/completions/gt.fish
  with --systemd: the user units from systemd/ into
  ${XDG_CONFIG_HOME:-~/.config}/systemd/user (@BINDIR@ in a unit becomes DIR/bin)

Options:
  --prefix DIR   install under DIR (default: ~/.local)
  --systemd      also install the systemd user units
  --from DIR     install binaries already built in DIR instead of building
  --build-only   build the binaries as an install would, install nothing
  -h, --help     show this help

Needs git and tmux at run time, and cargo (Rust >= 1.89) to build.
EOF
}

die() {
    printf 'install.sh: %s\n' "$*" >&2
    exit 1
}

prefix="${HOME:?HOME is not set}/.local"
systemd=0
from=""
build_only=0
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) [ $# -ge 2 ] || die "--prefix needs a directory"; prefix="$2"; shift 2 ;;
        --prefix=*) prefix="${1#--prefix=}"; shift ;;
        --systemd) systemd=1; shift ;;
        --from) [ $# -ge 2 ] || die "--from needs a directory"; from="$2"; shift 2 ;;
        --from=*) from="${1#--from=}"; shift ;;
        --build-only) build_only=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done
[ -n "$prefix" ] || die "--prefix is empty"
# Relative paths are relative to where the user ran us, not to the source tree.
case "$prefix" in /*) ;; *) prefix="$PWD/$prefix" ;; esac
if [ -n "$from" ]; then
    case "$from" in /*) ;; *) from="$PWD/$from" ;; esac
fi

# Everything below is relative to the source tree this script lives in.
# (No external programs before the tool check below, so it can report them.)
here="${BASH_SOURCE[0]%/*}"
[ "$here" != "${BASH_SOURCE[0]}" ] || here=.
cd "$here"

# Report every missing tool at once, each with how to get it.
missing=()
need() {
    command -v "$1" >/dev/null 2>&1 || missing+=("$1: not found; $2")
}
if [ -z "$from" ]; then
    need cargo "install Rust >= 1.89 with rustup: curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh"
fi
need git "install it: sudo apt-get install -y git (Debian/Ubuntu), sudo dnf install git (Fedora), brew install git (macOS)"
need tmux "install it: sudo apt-get install -y tmux (Debian/Ubuntu), sudo dnf install tmux (Fedora), brew install tmux (macOS)"
if [ ${#missing[@]} -gt 0 ]; then
    printf 'install.sh: missing %s\n' "${missing[@]}" >&2
    exit 1
fi

# The package's binaries are exactly the files in src/bin/.
bins=()
for f in src/bin/*.rs; do
    name="${f##*/}"
    bins+=("${name%.rs}")
done
[ ${#bins[@]} -gt 0 ] || die "no binaries in $(pwd)/src/bin: run install.sh from a gastown source tree"

if [ -z "$from" ]; then
    # Statically linked where glibc's libc.a is installed: a gt send then
    # starts without the dynamic loader and its relocations, in about half
    # the time (bench/send.sh). The explicit --target keeps the flags off
    # build scripts and proc-macros, which must stay dynamic.
    host=$(rustc -vV | sed -n 's/^host: //p')
    [ -n "$host" ] || die "rustc -vV names no host"
    flags=()
    case "$host" in
        *-linux-gnu*)
            # cc prints the full path of a libc.a it would link, else the bare name.
            case "$(cc -print-file-name=libc.a 2>/dev/null)" in
                /*) flags=("CARGO_TARGET_$(printf %s "$host" | tr a-z.- A-Z__)_RUSTFLAGS=-C target-feature=+crt-static -C relocation-model=static") ;;
                *) echo "install.sh: no static libc.a (libc6-dev, glibc-static): building dynamically linked binaries" >&2 ;;
            esac
            ;;
    esac
    echo "building gastown (release)..."
    env "${flags[@]}" cargo build --release --locked --target "$host"
    from="${CARGO_TARGET_DIR:-target}/$host/release"
fi
[ "$build_only" = 0 ] || exit 0

# Copy to a temp file beside the destination, then rename over it: a running
# binary is never overwritten in place, and an interrupted install leaves no
# half-written file.
put() { # put SRC DEST MODE
    local tmp
    tmp="$(dirname "$2")/.$(basename "$2").tmp.$$"
    install -m "$3" "$1" "$tmp"
    mv -f "$tmp" "$2"
}

bindir="$prefix/bin"
mandir="$prefix/share/man/man1"
mkdir -p "$bindir" "$mandir"
for b in "${bins[@]}"; do
    [ -x "$from/$b" ] || die "$from/$b: not built"
    put "$from/$b" "$bindir/$b" 755
done
echo "installed ${#bins[@]} binaries into $bindir: ${bins[*]}"

pages=(man/*.1)
[ -e "${pages[0]}" ] || die "no man pages in $(pwd)/man"
for p in "${pages[@]}"; do
    put "$p" "$mandir/${p##*/}" 644
done
echo "installed ${#pages[@]} man pages into $mandir"

# Completion scripts, generated by the gt just installed (its own clap
# definitions). bash-completion and fish look in these directories on their
# own; zsh needs the directory on its fpath.
datadir="${XDG_DATA_HOME:-$HOME/.local/share}"
confdir="${XDG_CONFIG_HOME:-$HOME/.config}"
completions=(
    "bash:$datadir/bash-completion/completions/gt"
    "zsh:$datadir/zsh/site-functions/_gt"
    "fish:$confdir/fish/completions/gt.fish"
)
for c in "${completions[@]}"; do
    shell="${c%%:*}" dest="${c#*:}"
    mkdir -p "$(dirname "$dest")"
    tmp="$(dirname "$dest")/.$(basename "$dest").tmp.$$"
    "$bindir/gt" completions "$shell" >"$tmp" || { rm -f "$tmp"; die "gt completions $shell failed"; }
    mv -f "$tmp" "$dest"
done
echo "installed completions for bash, zsh and fish (zsh: add $datadir/zsh/site-functions to fpath)"

if [ "$systemd" = 1 ]; then
    units=()
    if [ -d systemd ]; then
        for u in systemd/*.service systemd/*.path systemd/*.timer; do
            [ -e "$u" ] && units+=("$u")
        done
    fi
    if [ ${#units[@]} -eq 0 ]; then
        echo "install.sh: --systemd: this version has no units in systemd/; nothing to install" >&2
    else
        unitdir="${XDG_CONFIG_HOME:-$HOME/.config}/systemd/user"
        mkdir -p "$unitdir"
        for u in "${units[@]}"; do
            tmp="$unitdir/.${u##*/}.tmp.$$"
            sed "s|@BINDIR@|$bindir|g" "$u" >"$tmp"
            mv -f "$tmp" "$unitdir/${u##*/}"
        done
        echo "installed ${#units[@]} systemd user units into $unitdir"
        if command -v systemctl >/dev/null 2>&1 && systemctl --user daemon-reload 2>/dev/null; then
            echo "reloaded the systemd user manager"
        else
            echo "run 'systemctl --user daemon-reload' to load them"
        fi
    fi
fi

case ":$PATH:" in
    *":$bindir:"*) ;;
    *)
        echo
        echo "$bindir is not on your PATH. Add it, e.g. for bash:"
        echo "  echo 'export PATH=\"$bindir:\$PATH\"' >> ~/.bashrc && . ~/.bashrc"
        ;;
esac

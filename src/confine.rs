//! Confinement (protocol/README.md, "Confinement"): a path under a town's root
//! is resolved inside that root, or not at all.
//!
//! Agents run with the town's permissions and may plant symlinks anywhere in
//! the tree. Every path a tool writes, reads for a decision, moves or deletes
//! goes through this module: under a town root it is resolved with
//! `openat2(root, rel, RESOLVE_BENEATH)`, which the kernel fails (`EXDEV`)
//! when any step, a symlink or `..`, leaves the root. Moves, deletes and
//! `mkdir`s act on a parent directory opened that way (`renameat2`,
//! `unlinkat`, `mkdirat`), so nothing swapped in between a check and the use
//! can lead out: there is no check, only the resolution. Links that stay
//! inside the town are followed as before.
//!
//! A town root is entered by [`enter`] (`Town::open`, `gt install`); paths
//! outside every entered root (an origin in a temp dir, a test's files) are
//! used as given.

use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};
use std::sync::RwLock;

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, RenameFlags, ResolveFlag};
use nix::sys::stat::Mode;

static ROOTS: RwLock<Vec<PathBuf>> = RwLock::new(Vec::new());

/// From now on, resolve every path under `root` (a real path) beneath it.
pub fn enter(root: &Path) {
    let mut roots = ROOTS.write().unwrap_or_else(|e| e.into_inner());
    if !roots.iter().any(|r| r == root) {
        roots.push(root.to_path_buf());
    }
}

/// The entered root `path` lies under (the longest), and the rest of it.
fn place(path: &Path) -> Option<(PathBuf, PathBuf)> {
    let roots = ROOTS.read().unwrap_or_else(|e| e.into_inner());
    roots
        .iter()
        .filter(|r| path.starts_with(r))
        .max_by_key(|r| r.as_os_str().len())
        .map(|r| {
            (
                r.clone(),
                path.strip_prefix(r).expect("prefix").to_path_buf(),
            )
        })
}

/// Whether `path` lies under an entered town root.
pub fn is_confined(path: &Path) -> bool {
    place(path).is_some()
}

fn open_root(root: &Path) -> io::Result<OwnedFd> {
    nix::fcntl::open(
        root,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(io::Error::from)
}

/// `openat2` beneath `root`; an escape becomes the error naming the link.
fn beneath(
    root: &Path,
    rootfd: &OwnedFd,
    rel: &Path,
    flags: OFlag,
    mode: u32,
) -> io::Result<OwnedFd> {
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .mode(Mode::from_bits_truncate(mode))
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    // EAGAIN: a rename raced the resolution; the kernel asks for a retry.
    for _ in 0..100 {
        match nix::fcntl::openat2(rootfd, rel, how) {
            Err(Errno::EAGAIN) => continue,
            Err(Errno::EXDEV) => return Err(escape(root, rel)),
            // A kernel before 5.6, or a seccomp filter (a container's) that
            // refuses the call: there is no safe way to resolve the path.
            Err(Errno::ENOSYS) => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "the kernel refuses openat2 (Linux 5.6 or later, and no seccomp filter that blocks it, is needed to keep every path inside the town)",
                ));
            }
            r => return r.map_err(io::Error::from),
        }
    }
    Err(io::Error::from(Errno::EAGAIN))
}

/// Open `path` with `flags` (`O_CLOEXEC` is added; `mode` for `O_CREAT`).
pub fn open(path: &Path, flags: OFlag, mode: u32) -> io::Result<File> {
    let fd = match place(path) {
        Some((root, rel)) => beneath(&root, &open_root(&root)?, &rel, flags, mode)?,
        None => nix::fcntl::open(
            path,
            flags | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(mode),
        )?,
    };
    Ok(File::from(fd))
}

/// `fs::read`.
pub fn read(path: &Path) -> io::Result<Vec<u8>> {
    let mut f = open(path, OFlag::O_RDONLY, 0)?;
    let mut buf = Vec::new();
    io::Read::read_to_end(&mut f, &mut buf)?;
    Ok(buf)
}

/// `fs::metadata` (follows links that stay inside).
pub fn metadata(path: &Path) -> io::Result<std::fs::Metadata> {
    open(path, OFlag::O_PATH, 0)?.metadata()
}

/// Fail, naming the link, if `path` or the part of it that exists leads out
/// of its town. For what is handed to other programs (git, tmux) by name: a
/// real-path check at the moment of use.
pub fn check(path: &Path) -> io::Result<()> {
    let Some((root, rel)) = place(path) else {
        return Ok(());
    };
    let rootfd = open_root(&root)?;
    let mut rel = rel.as_path();
    loop {
        match beneath(&root, &rootfd, rel, OFlag::O_PATH, 0) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => match rel.parent() {
                Some(p) => rel = p,
                None => return Ok(()),
            },
            r => return r.map(drop),
        }
    }
}

/// A directory opened (`O_PATH`) inside the town, and a name in it.
struct At {
    dir: OwnedFd,
    name: OsString,
}

fn at(path: &Path) -> io::Result<At> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?
        .to_os_string();
    let parent = path.parent().unwrap_or(Path::new("."));
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    let dir = match place(parent) {
        Some((root, rel)) => beneath(
            &root,
            &open_root(&root)?,
            &rel,
            OFlag::O_PATH | OFlag::O_DIRECTORY,
            0,
        )?,
        None => nix::fcntl::open(
            parent,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?,
    };
    Ok(At { dir, name })
}

/// `rename(2)`, or `renameat2(2)` with `flags`. Neither name's last component
/// is followed, so a link in place of either is moved or replaced, never its
/// target.
pub fn rename(from: &Path, to: &Path, flags: RenameFlags) -> io::Result<()> {
    let (a, b) = (at(from)?, at(to)?);
    nix::fcntl::renameat2(
        &a.dir,
        a.name.as_os_str(),
        &b.dir,
        b.name.as_os_str(),
        flags,
    )
    .map_err(io::Error::from)
}

/// `link(2)` (never follows `from`).
pub fn hard_link(from: &Path, to: &Path) -> io::Result<()> {
    let (a, b) = (at(from)?, at(to)?);
    nix::unistd::linkat(
        &a.dir,
        a.name.as_os_str(),
        &b.dir,
        b.name.as_os_str(),
        nix::fcntl::AtFlags::empty(),
    )
    .map_err(io::Error::from)
}

/// `fs::remove_file` (a link is removed, not its target).
pub fn remove_file(path: &Path) -> io::Result<()> {
    unlink(path, nix::unistd::UnlinkatFlags::NoRemoveDir)
}

/// `fs::remove_dir` (empty directories only).
pub fn remove_dir(path: &Path) -> io::Result<()> {
    unlink(path, nix::unistd::UnlinkatFlags::RemoveDir)
}

fn unlink(path: &Path, flags: nix::unistd::UnlinkatFlags) -> io::Result<()> {
    let a = at(path)?;
    nix::unistd::unlinkat(&a.dir, a.name.as_os_str(), flags).map_err(io::Error::from)
}

/// `fs::remove_dir_all`: std's walk never follows a link inside the tree, and
/// it starts from the parent opened here, through `/proc/self/fd`.
pub fn remove_dir_all(path: &Path) -> io::Result<()> {
    let a = at(path)?;
    std::fs::remove_dir_all(fd_path(&a.dir).join(&a.name))
}

/// `fs::read_dir`, as the names of the entries.
pub fn read_dir(path: &Path) -> io::Result<Vec<OsString>> {
    let dir = open(path, OFlag::O_PATH | OFlag::O_DIRECTORY, 0)?;
    std::fs::read_dir(fd_path(&dir))?
        .map(|e| e.map(|e| e.file_name()))
        .collect()
}

/// The name of an open file that the kernel resolves to exactly that file.
fn fd_path(fd: &impl AsFd) -> PathBuf {
    use std::os::fd::AsRawFd;
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd()))
}

/// `mkdir -p`: each directory is made in its parent opened inside the town.
pub fn create_dir_all(path: &Path) -> io::Result<()> {
    let Some((root, rel)) = place(path) else {
        return std::fs::create_dir_all(path);
    };
    let rootfd = open_root(&root)?;
    let mut dir = beneath(
        &root,
        &rootfd,
        Path::new(""),
        OFlag::O_PATH | OFlag::O_DIRECTORY,
        0,
    )?;
    let mut sofar = PathBuf::new();
    for c in rel.components() {
        sofar.push(c);
        if let Component::Normal(name) = c {
            match nix::sys::stat::mkdirat(&dir, name, Mode::from_bits_truncate(0o777)) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(e.into()),
            }
        }
        dir = beneath(
            &root,
            &rootfd,
            &sofar,
            OFlag::O_PATH | OFlag::O_DIRECTORY,
            0,
        )?;
    }
    Ok(())
}

/// Where a symlink in `root`/`rel` leads out, as an error: `<link> is a
/// symlink to <target>, out of the town <root>; refused`.
fn escape(root: &Path, rel: &Path) -> io::Error {
    let msg = match outward_link(root, rel) {
        Some((link, target)) => format!(
            "{} is a symlink to {}, out of the town {}; refused",
            link.display(),
            target.display(),
            root.display()
        ),
        None => format!("leads out of the town {}; refused", root.display()),
    };
    io::Error::other(msg)
}

/// The first symlink on the way from `root` along `rel` whose target lies
/// outside `root`, with the target as written.
fn outward_link(root: &Path, rel: &Path) -> Option<(PathBuf, PathBuf)> {
    let mut cur = root.to_path_buf();
    for c in rel.components() {
        let next = match c {
            Component::Normal(n) => cur.join(n),
            Component::ParentDir => {
                cur.pop();
                if !cur.starts_with(root) {
                    return Some((root.join(rel), cur));
                }
                continue;
            }
            _ => continue,
        };
        if let Ok(target) = std::fs::read_link(&next) {
            let resolved = resolve_lexically(&cur, &target);
            let real = std::fs::canonicalize(&next).unwrap_or(resolved);
            if !real.starts_with(root) {
                return Some((next, target));
            }
            cur = real;
        } else {
            cur = next;
        }
    }
    None
}

/// `target` as seen from directory `dir`, `..` and `.` folded away (for a
/// dangling link, which `canonicalize` cannot follow).
pub(crate) fn resolve_lexically(dir: &Path, target: &Path) -> PathBuf {
    let mut out = if target.is_absolute() {
        PathBuf::new()
    } else {
        dir.to_path_buf()
    };
    for c in target.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Every symlink under `root` that leads out of it, with its target as
/// written (for `gt doctor`). Links are not followed.
pub fn outward_links(root: &Path) -> Vec<(PathBuf, PathBuf)> {
    links_out(root, root)
}

/// The first symlink under `dir` (inside an entered town) that leads out of
/// the town, with its target: for a tree another program writes in by name.
pub fn first_link_out(dir: &Path) -> Option<(PathBuf, PathBuf)> {
    let (root, _) = place(dir)?;
    links_out(dir, &root).into_iter().next()
}

/// The symlinks under `walk` whose real target is not under `root`.
fn links_out(walk: &Path, root: &Path) -> Vec<(PathBuf, PathBuf)> {
    let mut out = Vec::new();
    for e in walkdir::WalkDir::new(walk)
        .follow_links(false)
        .into_iter()
        .flatten()
    {
        if !e.path_is_symlink() {
            continue;
        }
        let Ok(target) = std::fs::read_link(e.path()) else {
            continue;
        };
        let dir = e.path().parent().unwrap_or(root);
        let real =
            std::fs::canonicalize(e.path()).unwrap_or_else(|_| resolve_lexically(dir, &target));
        if !real.starts_with(root) {
            out.push((e.path().to_path_buf(), target));
        }
    }
    out
}

//! `TestEnv` (after jj's `TestEnvironment`): a temp directory with a town in
//! it, a cleared environment with a fixed clock and its own `TMPDIR`, helpers
//! to run the real binaries, read an agent's inbox, state and session, make
//! real bare git repositories, and compare whole outputs with the temp
//! directory replaced by `$TEST_ENV`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use tempfile::TempDir;

/// The time every command of a [`TestEnv`] sees (`GT_NOW`), so outputs that
/// carry times or ids compare whole. A test of the real clock removes it
/// (`env.cmd(..).env_remove("GT_NOW")`) or sets its own.
pub const NOW: &str = "2026-11-25T09:00:00Z";

/// What [`TestEnv::normalize`] puts in place of the environment's temp dir.
pub const TEST_ENV: &str = "$TEST_ENV";

/// Whether `tool` can be run here. A check that needs it skips when it is
/// missing, except under `CI=true`, where a missing tool fails the check
/// (naming the tool) instead of letting it pass silently.
pub fn have_tool(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", "command -v \"$0\"", tool])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none_or(|v| v != "true"),
            "{tool} is not installed, and CI=true requires every check to run (.ci/run installs it)"
        );
        eprintln!("{tool} not installed: check skipped (.ci/run installs it)");
    }
    found
}

/// Writes an executable file through a child process. A file this process
/// held open for writing stays open in every child another test thread
/// forked meanwhile, until that child's exec: running the file then fails
/// with ETXTBSY ("Text file busy"). A child's own descriptors are not
/// inherited by this process's other forks.
pub fn write_executable(path: &Path, contents: impl AsRef<[u8]>) {
    use std::io::Write;
    let mut sh = executable_from(path, Stdio::piped());
    sh.stdin
        .take()
        .unwrap()
        .write_all(contents.as_ref())
        .unwrap();
    assert!(sh.wait().unwrap().success(), "writing {}", path.display());
}

/// [`write_executable`] for a copy of `from` (a binary of ours).
pub fn copy_executable(from: &Path, to: &Path) {
    let mut sh = executable_from(to, std::fs::File::open(from).unwrap().into());
    assert!(sh.wait().unwrap().success(), "copying to {}", to.display());
}

fn executable_from(path: &Path, input: Stdio) -> std::process::Child {
    Command::new("sh")
        .args(["-c", "cat > \"$1\" && chmod 755 \"$1\"", "sh"])
        .arg(path)
        .stdin(input)
        .spawn()
        .unwrap()
}

/// Path of one of this package's binaries, built by cargo beside the test binary.
pub fn bin(name: &str) -> PathBuf {
    let mut dir = std::env::current_exe().expect("test exe");
    dir.pop();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let p = dir.join(name);
    assert!(
        p.exists(),
        "binary {} not built (looked at {})",
        name,
        p.display()
    );
    p
}

pub struct TestEnv {
    pub tmp: TempDir,
    /// The town root (`<tmp>/town`); created by [`TestEnv::new`].
    pub town: PathBuf,
    /// `GT_NOW` of every command; `None`: the real clock ([`TestEnv::real_clock`]).
    now: Option<&'static str>,
}

impl TestEnv {
    /// A temp dir with an installed town at `<tmp>/town`.
    pub fn new() -> Self {
        let env = Self::empty();
        env.ok("gt", &["install", env.town.to_str().unwrap()]);
        env
    }

    /// A temp dir with no town (`town` does not exist yet).
    pub fn empty() -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("gt-test-")
            .tempdir()
            .expect("tempdir");
        std::fs::create_dir(tmp.path().join("tmp")).expect("TMPDIR");
        let town = tmp.path().join("town");
        TestEnv {
            tmp,
            town,
            now: Some(NOW),
        }
    }

    /// The same environment on the real clock: its commands get no `GT_NOW`,
    /// nor do the sessions they start (a daemon's timer waits on that clock).
    pub fn real_clock(mut self) -> Self {
        self.now = None;
        self
    }

    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// A command for binary `name` with a clean environment: only PATH, HOME,
    /// a fixed GT_TOWN, GT_NOW ([`NOW`], unless [`TestEnv::real_clock`]),
    /// TMPDIR (`<tmp>/tmp`), and the current directory at the town root.
    #[must_use]
    pub fn cmd(&self, name: &str) -> Command {
        let mut c = Command::new(bin(name));
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.path())
            .env("TMPDIR", self.path().join("tmp"))
            .env("GT_TOWN", &self.town)
            .env("LC_ALL", "C")
            .current_dir(if self.town.exists() {
                &self.town
            } else {
                self.path()
            })
            .stdin(Stdio::null());
        if let Some(now) = self.now {
            c.env("GT_NOW", now);
        }
        c
    }

    #[must_use]
    pub fn run(&self, name: &str, args: &[&str]) -> Output {
        self.cmd(name).args(args).output().expect("spawn")
    }

    /// Run and require exit 0; returns stdout.
    pub fn ok(&self, name: &str, args: &[&str]) -> String {
        let out = self.run(name, args);
        assert!(
            out.status.success(),
            "{name} {args:?} failed with {:?}\nstdout: {}\nstderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf8 stdout")
    }

    /// Run and require exit 0 or 1 (a negative answer); returns stdout.
    pub fn ok_or_no(&self, name: &str, args: &[&str]) -> String {
        let out = self.run(name, args);
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "{name} {args:?}: {:?} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf8 stdout")
    }

    /// Run and require failure; returns (exit code, stderr).
    #[must_use]
    pub fn fails(&self, name: &str, args: &[&str]) -> (i32, String) {
        let out = self.run(name, args);
        assert!(
            !out.status.success(),
            "{name} {args:?} should fail; stdout: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8(out.stderr).expect("utf8 stderr"),
        )
    }

    /// A bare repository `<tmp>/<name>.git` whose `main` has one commit with README.
    pub fn bare_origin(&self, name: &str) -> PathBuf {
        let bare = self.path().join(format!("{name}.git"));
        git(
            self.path(),
            &["init", "-q", "--bare", "-b", "main", bare.to_str().unwrap()],
        );
        let work = self.path().join(format!("{name}.seed"));
        git(
            self.path(),
            &["init", "-q", "-b", "main", work.to_str().unwrap()],
        );
        std::fs::write(work.join("README"), format!("{name}\n")).unwrap();
        git(&work, &["add", "README"]);
        git(&work, &["commit", "-q", "-m", "initial"]);
        git(&work, &["push", "-q", bare.to_str().unwrap(), "main"]);
        bare
    }

    /// Run `gt args` as agent `address` working in `dir` (its clone), as
    /// its session would: GT_ADDRESS set, the current directory `dir`.
    pub fn as_agent(&self, address: &str, dir: &Path, args: &[&str]) -> Output {
        self.cmd("gt")
            .env("GT_ADDRESS", address)
            .current_dir(dir)
            .args(args)
            .output()
            .unwrap()
    }

    /// Add rig `name` cloned from a fresh bare origin; returns the rig path.
    pub fn add_rig(&self, name: &str) -> PathBuf {
        let origin = self.bare_origin(&format!("{name}-origin"));
        self.ok("gt", &["rig", "add", name, origin.to_str().unwrap()]);
        self.town.join(name)
    }
}

impl TestEnv {
    /// `text` with this environment's temp dir (as given and as resolved)
    /// replaced by [`TEST_ENV`], so a test can compare a whole output.
    pub fn normalize(&self, text: &str) -> String {
        let mut text = text.to_string();
        if let Ok(real) = self.path().canonicalize() {
            text = text.replace(real.to_str().unwrap(), TEST_ENV);
        }
        text.replace(self.path().to_str().unwrap(), TEST_ENV)
    }

    /// An agent's home: `home` relative to the town (`mayor`,
    /// `r/polecats/Nux`), or an absolute path taken as it is.
    pub fn home(&self, home: impl AsRef<Path>) -> PathBuf {
        self.town.join(home)
    }

    /// An agent's `state.json`, parsed.
    pub fn state(&self, home: impl AsRef<Path>) -> Value {
        read_json(&self.home(home).join("state.json"))
    }

    /// Change an agent's `state.json` by hand, as a person or a crashed tool
    /// might leave it.
    pub fn edit_state(&self, home: impl AsRef<Path>, edit: impl FnOnce(&mut Value)) {
        edit_json(&self.home(home).join("state.json"), edit);
    }

    /// The session id an agent's `state.json` records (panics if none).
    pub fn session(&self, home: impl AsRef<Path>) -> String {
        let home = self.home(home);
        let state = self.state(&home);
        state["session"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: no session in {state}", home.display()))
            .to_string()
    }

    /// Whose session `address` records, for the library's calls that act on
    /// one (`gastown::session::capture`, ...).
    pub fn owner(&self, address: &str) -> gastown::session::Owner {
        let town = gastown::town::Town::open(&self.town).unwrap();
        let home = town.home(&address.parse().unwrap()).unwrap();
        gastown::session::Owner::of(&town, &home)
    }

    /// Wait for the recorded session of an agent to end (pidfd, no polling).
    pub fn wait_session(&self, home: impl AsRef<Path>) {
        let id = self.session(home);
        assert!(
            gastown::session::wait(&id, std::time::Duration::from_secs(30)),
            "session {id} still running"
        );
    }

    /// An agent's `mail/inbox.jsonl`.
    pub fn inbox_path(&self, home: impl AsRef<Path>) -> PathBuf {
        self.home(home).join("mail/inbox.jsonl")
    }

    /// Every message in an agent's inbox, parsed (none if there is no file).
    pub fn inbox(&self, home: impl AsRef<Path>) -> Vec<Value> {
        jsonl(&self.inbox_path(home))
    }

    /// The messages of type `kind` in an agent's inbox.
    pub fn inbox_of(&self, home: impl AsRef<Path>, kind: &str) -> Vec<Value> {
        mail(&self.inbox_path(home), kind)
    }

    /// Create an issue in `rig`'s tracker; returns its id.
    pub fn issue(&self, rig: &str, title: &str) -> String {
        let out = self.ok("gt", &["issue", "--rig", rig, "create", title, "--json"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["id"].as_str().expect("id").to_string()
    }

    /// File an issue in `rig` and spawn a polecat on it whose agent only
    /// sleeps (a live session that does nothing); returns the issue's id.
    pub fn spawn_sleeper(&self, rig: &str, title: &str) -> String {
        let id = self.issue(rig, title);
        self.ok(
            "gt",
            &["spawn", "--issue", &id, "--agent", "exec sleep 1000"],
        );
        id
    }

    /// `gt send mayor` of an escalation from r/witness at time `at`: its id.
    pub fn escalate(&self, at: &str, subject: &str) -> String {
        let mut c = self.cmd("gt");
        c.env("GT_NOW", at).args([
            "send",
            "mayor",
            "--as",
            "r/witness",
            "--type",
            "escalation",
            "-s",
            subject,
            "-m",
            "help",
            "--json",
        ]);
        let v: Value = serde_json::from_str(&ok_output(&mut c)).unwrap();
        v["id"].as_str().unwrap().to_string()
    }

    /// Polecat `name` of `rig` spawned with the process backend on a new
    /// issue, running `exec sleep 1000`: its session's leader pid.
    pub fn spawn_process(&self, rig: &str, name: &str) -> i32 {
        let id = self.issue(rig, "Work");
        let out = ok_output(self.cmd("gt").env("GT_SESSION_BACKEND", "process").args([
            "spawn",
            "--issue",
            &id,
            "--name",
            name,
            "--agent",
            "exec sleep 1000",
            "--json",
        ]));
        let v: Value = serde_json::from_str(&out).unwrap();
        v["session"]
            .as_str()
            .unwrap()
            .split(':')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap()
    }
}

/// Whether process `pid` has exited (or is a zombie waiting for its parent).
pub fn process_gone(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
        s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

impl Drop for TestEnv {
    /// Each town has its own tmux socket; stop its server with the test.
    /// First, whatever the town started and a test left running (a
    /// process-backend session) is stopped as `gt stop --all` does: it would
    /// outlive the test's temp dir.
    fn drop(&mut self) {
        if let Ok(root) = self.town.canonicalize() {
            if let Ok(town) = gastown::town::Town::open(&root) {
                let _ = gastown::stop::all(&town, None);
            }
            kill_tmux_server(&gastown::session::tmux_socket(&root));
        }
    }
}

/// Stop the tmux server on socket `socket` (`-L`), if one runs, and remove
/// its socket file, which tmux 3.3 leaves behind, and the typing locks gt
/// leaves beside it: else every test run adds files to /tmp.
pub fn kill_tmux_server(socket: &str) {
    let _ = Command::new("tmux")
        .args(["-L", socket, "kill-server"])
        .env_remove("TMUX")
        .stderr(Stdio::null())
        .status();
    let dir = PathBuf::from(format!("/tmp/tmux-{}", nix::unistd::getuid()));
    let locks = format!("{socket}.");
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_name()
            .to_str()
            .is_some_and(|n| n == socket || (n.starts_with(&locks) && n.ends_with(".typing.lock")))
        {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Run `cmd` (from [`TestEnv::cmd`], with its own changes) and require exit 0;
/// returns stdout.
pub fn ok_output(cmd: &mut Command) -> String {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed with {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf8 stdout")
}

/// Run git with a fixed identity; panics on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.invalid")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.invalid")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Poll `cond` until it holds or `secs` pass; for the few things that have no
/// event to wait on (tmux copies pane output to its log asynchronously).
pub fn wait_until(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    cond()
}

/// Make a FIFO; reading it blocks until a stand-in agent writes, so tests
/// wait for the event instead of sleeping.
pub fn fifo(path: &Path) {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
}

/// How long a test waits for the other end of a FIFO before it fails: a stand-in
/// agent that never comes must fail the test, not hang the suite.
pub const FIFO_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Run `io` (which blocks on a FIFO) on a thread; fail the test if it takes
/// longer than [`FIFO_WAIT`]. A thread left blocked dies with the test process.
fn within_fifo_wait<T: Send + 'static>(
    what: String,
    io: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(io());
    });
    match rx.recv_timeout(FIFO_WAIT) {
        Ok(r) => r.unwrap_or_else(|e| panic!("{what}: {e}")),
        Err(_) => panic!("{what}: nobody at the other end within {FIFO_WAIT:?}"),
    }
}

/// Everything one writer (or a run of writers) put into FIFO `path`, up to EOF.
pub fn read_fifo(path: &Path) -> String {
    let p = path.to_path_buf();
    within_fifo_wait(format!("reading {}", path.display()), move || {
        std::fs::read_to_string(p)
    })
}

/// Write `text` into FIFO `path` (for a stand-in agent waiting on it).
pub fn write_fifo(path: &Path, text: &str) {
    let (p, t) = (path.to_path_buf(), text.to_string());
    within_fifo_wait(format!("writing {}", path.display()), move || {
        std::fs::write(p, t)
    })
}

/// A long-running watcher (`gt witness run`, `gt daemon run`) started as a
/// child with `--json`. [`Watcher::start`] returns once the watcher has printed
/// its start line on stderr, which comes after its first pass with its watches
/// up: whatever the test does next can only be seen through the watch. It is
/// killed when dropped.
pub struct Watcher {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Watcher {
    pub fn start(mut cmd: Command, banner: &str) -> Watcher {
        use std::io::BufRead;
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn watcher");
        let err = child.stderr.take().unwrap();
        let first = within_fifo_wait(format!("waiting for {banner:?}"), move || {
            std::io::BufReader::new(err)
                .lines()
                .next()
                .unwrap_or_else(|| Ok(String::new()))
        });
        assert!(first.starts_with(banner), "watcher's first line: {first:?}");
        // Lines are read on a thread so that a watcher printing nothing fails
        // the test (see next_json) instead of hanging it.
        let (tx, lines) = std::sync::mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out)
                .lines()
                .map_while(std::io::Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Watcher { child, lines }
    }

    /// The next JSON line the watcher printed.
    pub fn next_json(&mut self) -> serde_json::Value {
        let line = self
            .lines
            .recv_timeout(FIFO_WAIT)
            .unwrap_or_else(|e| panic!("no line from the watcher: {e}"));
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"))
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `id` of each line of JSONL text, in order.
pub fn jsonl_ids(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}"));
            v["id"]
                .as_str()
                .unwrap_or_else(|| panic!("no id in {l}"))
                .to_string()
        })
        .collect()
}

/// Read a JSON file.
pub fn read_json(path: &Path) -> Value {
    let s = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&s).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Read a JSON file, change it, and write it back (pretty, as gastown writes).
pub fn edit_json(path: &Path, edit: impl FnOnce(&mut Value)) {
    let mut v = read_json(path);
    edit(&mut v);
    std::fs::write(path, serde_json::to_vec_pretty(&v).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// The messages of type `kind` in inbox `path`.
pub fn mail(path: &Path, kind: &str) -> Vec<Value> {
    jsonl(path)
        .into_iter()
        .filter(|m| m["type"] == kind)
        .collect()
}

/// Every line of a JSONL file, parsed (panics on a bad line; none if the file
/// does not exist).
pub fn jsonl(path: &Path) -> Vec<Value> {
    match std::fs::read_to_string(path) {
        Ok(text) => text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("{}: {e}", path.display()),
    }
}

/// `gt witness patrol r --json` as if it were `now` (GT_NOW): each action's
/// (action, subject, detail).
pub fn patrol_at(env: &TestEnv, now: &str) -> Vec<(String, String, String)> {
    patrol_args_at(env, now, &[])
}

/// [`patrol_at`] with more arguments (`--epic <id>`).
pub fn patrol_args_at(env: &TestEnv, now: &str, args: &[&str]) -> Vec<(String, String, String)> {
    let out = ok_output(
        env.cmd("gt")
            .env("GT_NOW", now)
            .args(["witness", "patrol", "r", "--json"])
            .args(args),
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let f = |k: &str| a[k].as_str().unwrap_or_default().to_string();
            (f("action"), f("subject"), f("detail"))
        })
        .collect()
}

/// The (action, subject) pairs of a JSON array of actions (`gt witness
/// patrol --json`, `gt daemon tick --json`).
pub fn action_pairs(json: &str) -> Vec<(String, String)> {
    let v: Value = serde_json::from_str(json).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["action"].as_str().unwrap().to_string(),
                a["subject"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

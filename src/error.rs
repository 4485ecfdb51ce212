//! One error type for the whole library; binaries map its kind to an exit code
//! in one place (`exit_code`).

use std::fmt;
use std::io;
use std::path::Path;

/// Exit codes shared by every binary (protocol/README.md, "Exit codes").
pub mod exit {
    /// Success.
    pub const OK: i32 = 0;
    /// A negative answer: "no unread mail" with `--exit-code`, "not clean", "lost the race".
    pub const NO: i32 = 1;
    /// Usage or runtime error (clap uses 2 for usage errors too).
    pub const ERROR: i32 = 2;
    /// `gt <sub>` found no built-in and no `gt-<sub>` program.
    pub const UNKNOWN_COMMAND: i32 = 127;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Bad argument or input (bad name, bad address, bad JSON on stdin).
    Invalid,
    /// Something named does not exist (no town, no such rig, no such message).
    NotFound,
    /// Something already exists or is held by someone else (name taken, claim lost).
    Conflict,
    /// The filesystem or a child process failed.
    Io,
    /// The answer is "no" (not an error in the usual sense): exit code 1.
    Negative,
}

#[derive(Debug)]
pub struct Error {
    pub kind: Kind,
    msg: String,
    hint: Option<String>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: Kind, msg: impl Into<String>) -> Self {
        Error {
            kind,
            msg: msg.into(),
            hint: None,
        }
    }
    pub fn invalid(msg: impl Into<String>) -> Self {
        Self::new(Kind::Invalid, msg)
    }
    pub fn not_found(msg: impl Into<String>) -> Self {
        Self::new(Kind::NotFound, msg)
    }
    pub fn conflict(msg: impl Into<String>) -> Self {
        Self::new(Kind::Conflict, msg)
    }
    pub fn negative(msg: impl Into<String>) -> Self {
        Self::new(Kind::Negative, msg)
    }
    /// `<path>: <cause>`, the ripgrep shape.
    pub fn io(path: &Path, err: io::Error) -> Self {
        let kind = match err.kind() {
            io::ErrorKind::NotFound => Kind::NotFound,
            io::ErrorKind::AlreadyExists => Kind::Conflict,
            _ => Kind::Io,
        };
        Self::new(kind, format!("{}: {}", path.display(), err))
    }
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
    /// The same message as another kind (e.g. a lost claim, a conflict to the
    /// tracker, is a "no" to the caller that asked for the work).
    pub fn with_kind(mut self, kind: Kind) -> Self {
        self.kind = kind;
        self
    }
    /// Hint "did you mean X?" when one of `candidates` is a plausible typo of
    /// `word` (and the error has no hint yet): the one place that hint is made.
    pub fn suggest<'a>(self, word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Self {
        if self.hint.is_some() {
            return self;
        }
        match crate::address::did_you_mean(word, candidates) {
            Some(s) => {
                let hint = format!("did you mean {s}?");
                self.with_hint(hint)
            }
            None => self,
        }
    }
    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }
    pub fn message(&self) -> &str {
        &self.msg
    }
    /// Prefix the message with context, e.g. the file being processed.
    pub fn context(mut self, ctx: impl fmt::Display) -> Self {
        self.msg = format!("{ctx}: {}", self.msg);
        self
    }
    pub fn exit_code(&self) -> i32 {
        match self.kind {
            Kind::Negative => exit::NO,
            _ => exit::ERROR,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)?;
        if let Some(h) = &self.hint {
            write!(f, " ({h})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

/// Attach a path to an io::Result.
pub trait IoContext<T> {
    fn at(self, path: &Path) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: &Path) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}

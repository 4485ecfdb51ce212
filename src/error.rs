//! One error type for the whole library. Its [`Kind`] says what went wrong;
//! the CLI alone turns that into an exit code (`cli::exit_code`).

use std::fmt;
use std::io;
use std::path::Path;

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
    /// `gt <sub>` names no built-in and no `gt-<sub>` program: exit code 127.
    UnknownCommand,
}

#[derive(Debug)]
pub struct Error {
    pub kind: Kind,
    msg: String,
    hint: Option<String>,
    /// The command's output has already said it ([`Error::shown`]).
    shown: bool,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: Kind, msg: impl Into<String>) -> Self {
        Error {
            kind,
            msg: msg.into(),
            hint: None,
            shown: false,
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
    /// `word` (and the error has no hint yet).
    pub fn suggest<'a>(self, word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Self {
        match crate::address::did_you_mean(word, candidates) {
            Some(s) => self.suggest_these(&[s]),
            None => self,
        }
    }
    /// Hint "did you mean X?" (or "X or Y?") naming `these`, if any and the
    /// error has no hint yet: the one place that hint is made.
    pub fn suggest_these(self, these: &[&str]) -> Self {
        if self.hint.is_some() || these.is_empty() {
            return self;
        }
        let hint = format!("did you mean {}?", these.join(" or "));
        self.with_hint(hint)
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
    /// An error the command's output has already shown (doctor's findings,
    /// an empty inbox under `--exit-code`): only its kind, and so its exit
    /// code, is left to report.
    pub fn shown(kind: Kind) -> Self {
        Error {
            shown: true,
            ..Self::new(kind, "")
        }
    }
    /// Whether the output has already said it: nothing left to print.
    pub fn is_shown(&self) -> bool {
        self.shown
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

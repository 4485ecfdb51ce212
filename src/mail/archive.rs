//! Archiving: under the inbox lock, move the messages every reader of the inbox
//! has processed (the owner and each watcher) out of the hot file into
//! `mail/archive/<YYYY-MM>.jsonl`, then shrink the marks files to the ids still
//! in the inbox. Senders wait on the same lock and then open the new inbox, so
//! nothing sent meanwhile is lost.

use std::collections::HashSet;
use std::io::{self, Read};
use std::path::PathBuf;

use serde::Serialize;

use crate::clock;
use crate::error::{Error, IoContext, Result};
use crate::fsio::{self, Durability};
use crate::home::Home;

use super::Message;
use super::reader::{self, Mark, Reader};

/// The archive directory of a home: `mail/archive/`.
pub fn dir(home: &Home) -> PathBuf {
    home.mail_dir().join("archive")
}

/// Archive files, oldest first.
pub fn files(home: &Home) -> Result<Vec<PathBuf>> {
    let dir = dir(home);
    let mut out: Vec<PathBuf> = match crate::confine::read_dir(&dir) {
        Ok(names) => names
            .into_iter()
            .map(|n| dir.join(n))
            .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
            .collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(Error::io(&dir, e)),
    };
    out.sort();
    Ok(out)
}

/// What [`archive`] did.
#[derive(Debug, Serialize)]
pub struct Archived {
    /// Lines moved out: processed messages, bad lines, a torn tail.
    pub moved: usize,
    /// Messages left in the inbox (pending for some reader).
    pub kept: usize,
    /// The archive file written to, if anything moved.
    pub file: Option<PathBuf>,
}

/// Move processed mail out of `home`'s inbox. Lines that are not valid
/// messages go to the archive too (kept there verbatim, for `gt doctor`).
pub fn archive(home: &Home) -> Result<Archived> {
    let inbox = home.inbox();
    let _lock = fsio::lock_for(&inbox)?;
    let mut file = match crate::confine::open(&inbox, nix::fcntl::OFlag::O_RDONLY, 0) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(Archived {
                moved: 0,
                kept: 0,
                file: None,
            });
        }
        Err(e) => return Err(Error::io(&inbox, e)),
    };
    // The lock appenders also take on the file itself (a shell's `flock inbox.jsonl`).
    file.lock().at(&inbox)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).at(&inbox)?;

    // A message stays until the owner and every watcher have marked it.
    let owner = Reader::owner(home).marks;
    let mut done: Vec<HashSet<String>> = vec![reader::load_marks(&owner)?.into_keys().collect()];
    for path in reader::mark_files(home)? {
        if path != owner {
            done.push(reader::load_marks(&path)?.into_keys().collect());
        }
    }

    let mut keep = Vec::new();
    let mut kept_ids = HashSet::new();
    let mut moved: Vec<&[u8]> = Vec::new();
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        let text = line.strip_suffix(b"\n").unwrap_or(line);
        if text.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        // A torn tail is a dead writer's: we hold the lock, so no one is writing.
        let valid = line
            .ends_with(b"\n")
            .then(|| serde_json::from_slice::<Message>(text).ok())
            .flatten()
            .filter(|m| m.validate().is_ok());
        match valid {
            Some(m) if !done.iter().all(|d| d.contains(&m.id)) => {
                keep.extend_from_slice(line);
                kept_ids.insert(m.id);
            }
            _ => moved.push(text),
        }
    }
    if moved.is_empty() {
        return Ok(Archived {
            moved: 0,
            kept: kept_ids.len(),
            file: None,
        });
    }
    // Archive first, durably, then replace the inbox: a crash in between leaves
    // a message in both places, never in neither.
    let dir = dir(home);
    fsio::ensure_dir(&dir)?;
    let month = clock::now().strftime("%Y-%m").to_string();
    let target = dir.join(format!("{month}.jsonl"));
    fsio::append_lines(&target, &moved, Durability::Sync)?;
    fsio::write_atomic(&inbox, &keep)?;
    for path in reader::mark_files(home)? {
        compact_marks(&path, &kept_ids)?;
    }
    Ok(Archived {
        moved: moved.len(),
        kept: kept_ids.len(),
        file: Some(target),
    })
}

/// Keep only the marks of messages still in the inbox.
fn compact_marks(path: &std::path::Path, kept: &HashSet<String>) -> Result<()> {
    let _lock = fsio::lock_for(path)?;
    let bytes = match crate::confine::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(path, e)),
    };
    let mut out = Vec::new();
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        if line.ends_with(b"\n")
            && serde_json::from_slice::<Mark>(line).is_ok_and(|m| kept.contains(&m.id))
        {
            out.extend_from_slice(line);
        }
    }
    if out.len() != bytes.len() {
        fsio::write_atomic(path, &out)?;
    }
    Ok(())
}

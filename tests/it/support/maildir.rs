//! A look into a Dovecot user's Maildir from outside IMAP: which messages each folder
//! holds, and foreign messages placed there the way a delivery agent would.
//! Why: a round trip's cleanup must be checked with something other than the IMAP
//! code under test, and "never touches another message" needs messages it must not
//! touch.

use std::path::{Path, PathBuf};

use super::process::system_user;

/// A Maildir++ mailbox: `INBOX` is the top, a folder `F` is `.F`.
pub struct Maildir(pub PathBuf);

/// One message file.
#[derive(Debug, Clone)]
pub struct Message {
    /// Its path (in `new/` or `cur/`).
    pub path: PathBuf,
    /// Its content.
    pub text: String,
}

impl Message {
    /// The value of header field `name` (first occurrence, unfolded lines ignored).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.text
            .lines()
            .take_while(|line| !line.trim().is_empty())
            .find_map(|line| {
                let (field, value) = line.split_once(':')?;
                field.eq_ignore_ascii_case(name).then(|| value.trim())
            })
    }

    /// Whether Dovecot has it flagged `\Deleted` (Maildir flag `T`).
    pub fn deleted(&self) -> bool {
        let name = self.path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        name.rsplit_once(":2,")
            .is_some_and(|(_, flags)| flags.contains('T'))
    }
}

impl Maildir {
    fn folder(&self, folder: &str) -> PathBuf {
        if folder.eq_ignore_ascii_case("INBOX") {
            self.0.clone()
        } else {
            self.0.join(format!(".{folder}"))
        }
    }

    /// Every message of `folder`, new and seen.
    pub fn messages(&self, folder: &str) -> Vec<Message> {
        let mut found = Vec::new();
        for sub in ["new", "cur"] {
            let Ok(entries) = std::fs::read_dir(self.folder(folder).join(sub)) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if let Ok(text) = std::fs::read_to_string(&path) {
                    found.push(Message { path, text });
                }
            }
        }
        found
    }

    /// The messages of `folder` that carry mailprobe's token header.
    pub fn probe_messages(&self, folder: &str) -> Vec<Message> {
        self.messages(folder)
            .into_iter()
            .filter(|m| m.header("X-Mailprobe-Token").is_some())
            .collect()
    }

    /// Places `text` in `folder` as a message named `name`, as a delivery agent would:
    /// in `new/`, or in `cur/` with Maildir `flags` (`T`: `\Deleted`), owned by the
    /// mail user.
    pub fn place(&self, folder: &str, name: &str, text: &str, flags: Option<&str>) -> PathBuf {
        let (uid, gid) = system_user("dovecot").expect("the dovecot user");
        let dir = self.folder(folder);
        for sub in ["", "new", "cur", "tmp"] {
            let path = dir.join(sub);
            std::fs::create_dir_all(&path).expect("create the Maildir");
            std::os::unix::fs::chown(&path, Some(uid), Some(gid)).expect("chown the Maildir");
        }
        if !folder.eq_ignore_ascii_case("INBOX") {
            std::os::unix::fs::chown(&self.0, Some(uid), Some(gid)).expect("chown the Maildir");
        }
        let path = match flags {
            None => dir.join("new").join(name),
            Some(flags) => dir.join("cur").join(format!("{name}:2,{flags}")),
        };
        std::fs::write(&path, text).expect("write the message");
        std::os::unix::fs::chown(&path, Some(uid), Some(gid)).expect("chown the message");
        path
    }

    /// Whether a message named `name` (as placed) is still in `folder`.
    pub fn holds(&self, folder: &str, name: &str) -> bool {
        self.messages(folder).iter().any(|m| {
            m.path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n == name || n.starts_with(&format!("{name}:")))
        })
    }

    /// The root of the Maildir.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

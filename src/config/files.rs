//! Reading the files a configuration names — the configuration itself, secrets, CA
//! bundles, the listener's certificate and key — safely: regular files only (a FIFO
//! would block the reader until someone writes to it, a device such as `/dev/zero`
//! never ends), opened without blocking, and never more than a cap.

use std::fmt;
use std::fs::OpenOptions;
use std::io::Read as _;
use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

/// The most a secret file may hold: a password or a client secret is a line; a private
/// key or a certificate chain is a few KiB.
pub const MAX_SECRET_BYTES: u64 = 1 << 20;
/// The most a configuration file or a CA bundle may hold: the system bundle is about
/// 200 KiB and a configuration of 5,000 targets about 1 MiB.
pub const MAX_DOCUMENT_BYTES: u64 = 64 << 20;

/// Why a file could not be read.
#[derive(Debug)]
#[non_exhaustive]
pub enum FileError {
    /// Opening or reading failed.
    Io(std::io::Error),
    /// Not a regular file (a FIFO, a device, a directory, a socket).
    NotRegular(&'static str),
    /// Larger than the cap for its kind.
    TooLarge(u64),
    /// Not UTF-8 text where text is expected.
    NotText,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileError::Io(error) => write!(f, "{error}"),
            FileError::NotRegular(kind) => write!(
                f,
                "it is {kind}, not a regular file (only regular files are read, so that a \
                 reload can never block or read without end)"
            ),
            FileError::TooLarge(limit) => write!(
                f,
                "it is larger than {} (the most a file of this kind may hold)",
                size_text(*limit)
            ),
            FileError::NotText => f.write_str("it is not UTF-8 text"),
        }
    }
}

impl std::error::Error for FileError {}

impl FileError {
    /// Whether the file is simply not there or not ours to read (as opposed to there
    /// and wrong).
    pub fn is_absent(&self) -> bool {
        matches!(self, FileError::Io(error) if matches!(
            error.kind(),
            std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied
        ))
    }
}

/// The bytes of the regular file at `path`, at most `limit` of them.
///
/// # Errors
///
/// [`FileError`] when it cannot be opened or read, is not a regular file, or is larger
/// than `limit`.
pub fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, FileError> {
    // O_NONBLOCK: opening a FIFO for reading otherwise waits for a writer. It changes
    // nothing for a regular file.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(FileError::Io)?;
    let metadata = file.metadata().map_err(FileError::Io)?;
    let kind = metadata.file_type();
    if !kind.is_file() {
        return Err(FileError::NotRegular(if kind.is_fifo() {
            "a FIFO (named pipe)"
        } else if kind.is_char_device() {
            "a character device"
        } else if kind.is_block_device() {
            "a block device"
        } else if kind.is_dir() {
            "a directory"
        } else if kind.is_socket() {
            "a socket"
        } else {
            "a special file"
        }));
    }
    if metadata.len() > limit {
        return Err(FileError::TooLarge(limit));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(metadata.len()).unwrap_or(0));
    // The file may grow while it is read: never more than the cap.
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(FileError::Io)?;
    if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > limit {
        return Err(FileError::TooLarge(limit));
    }
    Ok(bytes)
}

/// The text of the regular file at `path`, at most `limit` bytes.
///
/// # Errors
///
/// As [`read_bounded`], and [`FileError::NotText`] when it is not UTF-8.
pub fn read_text(path: &Path, limit: u64) -> Result<String, FileError> {
    String::from_utf8(read_bounded(path, limit)?).map_err(|_| FileError::NotText)
}

/// Whether anyone may read the file at `path` (its mode has the "others read" bit).
pub fn world_readable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o004 != 0)
}

fn size_text(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{} KiB", bytes >> 10)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_within_the_cap_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "hunter2\n").unwrap();
        assert_eq!(read_text(&path, 64).unwrap(), "hunter2\n");
        assert!(matches!(
            read_bounded(&path, 4),
            Err(FileError::TooLarge(4))
        ));
        assert!(matches!(
            read_bounded(Path::new("/dev/zero"), 64),
            Err(FileError::NotRegular("a character device"))
        ));
        assert!(matches!(
            read_bounded(dir.path(), 64),
            Err(FileError::NotRegular("a directory"))
        ));
        let fifo = dir.path().join("fifo");
        let name = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo(3) with a valid NUL-terminated path; no memory is shared.
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
        assert!(matches!(
            read_bounded(&fifo, 64),
            Err(FileError::NotRegular("a FIFO (named pipe)"))
        ));
        std::fs::write(&path, [0xff, 0xfe]).unwrap();
        assert!(matches!(read_text(&path, 64), Err(FileError::NotText)));
    }
}

//! Where qbench touches the file system on a user's behalf: names from a suite made into safe
//! file names, every written path confined to its folder, and reads bounded by stated limits.
//!
//! Suites and model files are often downloaded, and qbench runs unattended in CI. A model named
//! `../../x` or `/etc/x` must not write outside the run folder, and a "suite" that is
//! `/dev/zero` or a FIFO must be refused before qbench allocates or waits for it.

use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

/// The longest file-name stem qbench derives from a name (bytes); longer names are cut and end
/// in a hash of the whole name, so they stay apart.
pub const MAX_STEM_BYTES: usize = 64;

/// The largest suite file qbench reads (bytes). Real suites are a few KiB.
pub const MAX_SUITE_BYTES: u64 = 1 << 20;

/// The largest records file qbench reads (bytes): about 100 000 records with their raw samples.
pub const MAX_RECORDS_BYTES: u64 = 4 << 30;

/// Why a path was refused.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error(
        "refusing to write {path}: it is not a plain file name under {root} (qbench writes only inside its run folder)"
    )]
    Outside { root: PathBuf, path: PathBuf },
    /// The OS's reason is part of the message (not a `source`), so errors that wrap this one
    /// with a hint of their own print it once.
    #[error("cannot read {path}: {cause}")]
    Read { path: PathBuf, cause: std::io::Error },
    #[error("cannot read {path}: it is {what}, not a regular file; give the path of a file")]
    NotAFile { path: PathBuf, what: &'static str },
    #[error("cannot read {path}: it is {size_bytes} bytes, more than the {limit_bytes}-byte limit for {what}")]
    TooLarge { path: PathBuf, size_bytes: u64, limit_bytes: u64, what: &'static str },
}

/// A safe file-name stem for `name`: ASCII letters, digits, `-`, `_` and `.` are kept, any other
/// character becomes `_`, a leading `.` becomes `_` (no hidden files, no `..`), and a name longer
/// than [`MAX_STEM_BYTES`] is cut and ends in 8 hex digits of its SHA-256. Never empty.
pub fn file_stem(name: &str) -> String {
    let mut out: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' }).collect();
    if out.starts_with('.') {
        out.replace_range(0..1, "_");
    }
    if out.is_empty() {
        out.push('_');
    }
    if out.len() > MAX_STEM_BYTES {
        let digest = Sha256::digest(name.as_bytes());
        let tag: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
        out.truncate(MAX_STEM_BYTES - 9);
        out.push('-');
        out.push_str(&tag);
    }
    out
}

/// Whether `name` is a plain file name qbench may create: one component, safe characters only,
/// not hidden, not too long.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// `root/name`, once `name` is checked to be a plain file name ([`file_stem`] output plus an
/// extension): the result always lies directly under `root`.
pub fn join(root: &Path, name: &str) -> Result<PathBuf, FileError> {
    if is_plain_name(name) {
        Ok(root.join(name))
    } else {
        Err(FileError::Outside { root: root.to_path_buf(), path: root.join(name) })
    }
}

/// Checks that `path` lies under `root` by its components alone (no `..`, no root, no prefix
/// after `root`), so a write to it cannot leave `root` whatever the names inside were.
pub fn check_under(root: &Path, path: &Path) -> Result<(), FileError> {
    let outside = || FileError::Outside { root: root.to_path_buf(), path: path.to_path_buf() };
    let rest = path.strip_prefix(root).map_err(|_| outside())?;
    if rest.as_os_str().is_empty() || !rest.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(outside());
    }
    Ok(())
}

/// Reads `path` whole, after checking that it is a regular file (not a FIFO, a device or a
/// directory) of at most `limit_bytes`; `what` names the kind of file in the error.
pub fn read_bounded(path: &Path, limit_bytes: u64, what: &'static str) -> Result<Vec<u8>, FileError> {
    use std::io::Read;
    let read_err = |cause| FileError::Read { path: path.to_path_buf(), cause };
    let meta = std::fs::metadata(path).map_err(read_err)?;
    check_regular(path, &meta)?;
    if meta.len() > limit_bytes {
        return Err(FileError::TooLarge { path: path.to_path_buf(), size_bytes: meta.len(), limit_bytes, what });
    }
    // The file may grow between the check and the read: read at most one byte past the limit.
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    std::fs::File::open(path).map_err(read_err)?.take(limit_bytes + 1).read_to_end(&mut bytes).map_err(read_err)?;
    if bytes.len() as u64 > limit_bytes {
        return Err(FileError::TooLarge {
            path: path.to_path_buf(),
            size_bytes: bytes.len() as u64,
            limit_bytes,
            what,
        });
    }
    Ok(bytes)
}

/// Refuses anything but a regular file (symbolic links are followed).
pub fn check_regular(path: &Path, meta: &std::fs::Metadata) -> Result<(), FileError> {
    use std::os::unix::fs::FileTypeExt;
    let ft = meta.file_type();
    let what = if ft.is_file() {
        return Ok(());
    } else if ft.is_dir() {
        "a directory"
    } else if ft.is_fifo() {
        "a FIFO (named pipe)"
    } else if ft.is_char_device() || ft.is_block_device() {
        "a device"
    } else if ft.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    };
    Err(FileError::NotAFile { path: path.to_path_buf(), what })
}

/// The largest side file of a run folder qbench reads (`environment.json`, `gates.json`,
/// `cases.json`, chart data): bytes.
pub const MAX_SIDE_FILE_BYTES: u64 = 64 << 20;

/// A run folder's optional side file: its bytes when it is a regular file within
/// [`MAX_SIDE_FILE_BYTES`], `None` otherwise (missing, a FIFO, a device, too large).
pub fn read_side_file(path: &Path) -> Option<Vec<u8>> {
    read_bounded(path, MAX_SIDE_FILE_BYTES, "a run folder's file").ok()
}

/// Like [`read_bounded`] for text: invalid UTF-8 is an error naming the byte offset.
pub fn read_text_bounded(path: &Path, limit_bytes: u64, what: &'static str) -> Result<String, FileError> {
    let bytes = read_bounded(path, limit_bytes, what)?;
    String::from_utf8(bytes).map_err(|e| FileError::Read {
        path: path.to_path_buf(),
        cause: std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not UTF-8 text (invalid byte at offset {})", e.utf8_error().valid_up_to()),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_become_plain_names_under_the_root() {
        let root = Path::new("/runs/x/artifacts");
        let long = "é".repeat(500);
        for name in [
            "/etc/passwd",
            "../../..",
            "..",
            ".",
            "",
            "a/b\\c",
            "tab\there",
            "nul\0x",
            "<script>",
            &long,
            "名前",
            "C:\\x",
        ] {
            let stem = file_stem(name);
            assert!(is_plain_name(&stem), "{name:?} -> {stem:?}");
            assert!(stem.len() <= MAX_STEM_BYTES, "{stem}");
            let p = join(root, &format!("{stem}.f32.onnx")).unwrap();
            check_under(root, &p).unwrap();
            assert_eq!(p.parent(), Some(root), "{p:?}");
        }
        // Safe names are kept as they are.
        assert_eq!(file_stem("cnn-tf_style.v2"), "cnn-tf_style.v2");
        // Long names that differ only at the end stay apart.
        assert_ne!(file_stem(&format!("{long}a")), file_stem(&format!("{long}b")));
    }

    #[test]
    fn join_and_check_refuse_paths_that_leave_the_root() {
        let root = Path::new("/runs/x");
        for bad in ["../y", "/etc/passwd", "a/b", ".hidden", "..", ""] {
            assert!(join(root, bad).is_err(), "{bad}");
        }
        for bad in ["/runs/x/../y", "/runs/y", "/runs/x", "/etc/x"] {
            assert!(check_under(root, Path::new(bad)).is_err(), "{bad}");
        }
        check_under(root, Path::new("/runs/x/charts/a.svg")).unwrap();
    }

    #[test]
    fn bounded_reads_refuse_devices_fifos_directories_and_large_files() {
        let dir = tempfile::tempdir().unwrap();
        let e = read_bounded(Path::new("/dev/zero"), 1024, "a suite").unwrap_err().to_string();
        assert!(e.contains("a device, not a regular file"), "{e}");
        let e = read_bounded(dir.path(), 1024, "a suite").unwrap_err().to_string();
        assert!(e.contains("a directory"), "{e}");
        let fifo = dir.path().join("fifo");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        let e = read_bounded(&fifo, 1024, "a suite").unwrap_err().to_string();
        assert!(e.contains("FIFO"), "{e}");
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'x'; 2000]).unwrap();
        let e = read_bounded(&big, 1024, "a suite").unwrap_err().to_string();
        assert!(e.contains("2000 bytes, more than the 1024-byte limit for a suite"), "{e}");
        assert_eq!(read_bounded(&big, 2000, "a suite").unwrap().len(), 2000);
        std::fs::write(&big, [0xff, 0xfe]).unwrap();
        let e = read_text_bounded(&big, 10, "a suite").unwrap_err().to_string();
        assert!(e.contains("not UTF-8 text (invalid byte at offset 0)"), "{e}");
    }
}

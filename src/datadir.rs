//! The data directory is private to the server's user: it holds the server secret and every
//! account's token key (whoever reads `data.redb` can sign a superuser token), the uploads,
//! the search index and the admin socket.
//!
//! Three layers, so no single one has to be perfect:
//! - [`restrict_umask`]: commands that open the data directory set the process umask to
//!   `0077` first, which is what the systemd unit's `UMask=0077` does, so files and
//!   directories created by third-party crates (redb's data file, tantivy's segments and
//!   lock files, `tempfile`) are `0600`/`0700` whatever umask the operator's shell had.
//! - Our own code creates with explicit modes ([`create_dir_all`], [`create_private_file`]),
//!   which holds even when the library is embedded without the umask (tests, tools).
//! - [`prepare`] creates the directory `0700`, and tightens an existing one that is group-
//!   or world-accessible (with a warning), before anything in it is opened or bound. Inside
//!   a `0700` directory nothing is reachable by other users whatever its own mode, which is
//!   also why binding the admin socket and `chmod`ing it afterwards leaves no window: the
//!   socket's directory is already closed when it is bound.

use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of every directory the server creates in the data directory (and of the data
/// directory itself).
pub const DIR_MODE: u32 = 0o700;
/// Mode of every file the server creates in the data directory.
pub const FILE_MODE: u32 = 0o600;
/// The permission bits nobody but the owner may have.
const GROUP_OTHER: u32 = 0o077;

/// Sets the process umask to `0077` (group and others get nothing on anything created from
/// now on). Called once by the CLI, before the data directory is opened; process-wide, like
/// the systemd unit's `UMask=`.
pub fn restrict_umask() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(GROUP_OTHER));
}

/// What [`prepare`] found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Prepared {
    /// The directory was created now.
    pub created: bool,
    /// It existed with group or other permission bits, which were removed (from it and
    /// from everything inside it).
    pub tightened: bool,
}

/// Creates the data directory `0700` (its missing parents with the default mode), or
/// tightens an existing one: if it has any group or other bit it becomes `0700` and every
/// entry inside loses its group and other bits (once; the next start finds it private and
/// walks nothing). Logs a warning when it tightened.
pub fn prepare(dir: &Path) -> io::Result<Prepared> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::DirBuilder::new().mode(DIR_MODE).create(dir) {
        Ok(()) => {
            // `mkdir`'s mode is masked by the umask, which could only remove more bits;
            // set it exactly anyway.
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(DIR_MODE))?;
            return Ok(Prepared { created: true, tightened: false });
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let meta = std::fs::metadata(dir)?;
    if !meta.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::NotADirectory,
            format!("{} is not a directory", dir.display()),
        ));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & GROUP_OTHER == 0 {
        return Ok(Prepared::default());
    }
    if let Err(err) = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(DIR_MODE)) {
        // Not ours to change (e.g. owned by another user): say so loudly, but a directory
        // laid out like this on purpose still starts.
        tracing::warn!(
            dir = %dir.display(),
            mode = %format!("{mode:04o}"),
            error = %err,
            "the data directory is accessible to other users and cannot be made private; \
             it holds the server secret and token keys"
        );
        return Ok(Prepared::default());
    }
    let inner = tighten_tree(dir);
    tracing::warn!(
        dir = %dir.display(),
        was = %format!("{mode:04o}"),
        entries_tightened = inner,
        "the data directory was accessible to other users; it is now 0700 and nothing inside \
         is group- or world-accessible (it holds the server secret and token keys)"
    );
    Ok(Prepared { created: false, tightened: true })
}

/// Removes the group and other bits from everything under `dir` (not following symbolic
/// links); returns how many entries changed. Errors on single entries are logged and
/// skipped: the directory itself is already closed.
fn tighten_tree(dir: &Path) -> usize {
    let mut changed = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        let entries = match std::fs::read_dir(&current) {
            Ok(entries) => entries,
            Err(err) => {
                tracing::warn!(dir = %current.display(), error = %err, "cannot list while tightening");
                continue;
            }
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
            if meta.file_type().is_symlink() {
                continue;
            }
            let mode = meta.permissions().mode() & 0o7777;
            if mode & GROUP_OTHER != 0 {
                match std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & !GROUP_OTHER)) {
                    Ok(()) => changed += 1,
                    Err(err) => {
                        tracing::warn!(path = %path.display(), error = %err, "cannot tighten");
                    }
                }
            }
            if meta.is_dir() {
                stack.push(path);
            }
        }
    }
    changed
}

/// `create_dir_all` whose new directories are `0700` whatever the umask.
pub fn create_dir_all(path: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new().recursive(true).mode(DIR_MODE).create(path)
}

/// Creates a new file `0600` (fails if it exists).
pub fn create_private_file(path: &Path) -> io::Result<std::fs::File> {
    std::fs::OpenOptions::new().write(true).create_new(true).mode(FILE_MODE).open(path)
}

/// Removes the group and other bits of one existing path (e.g. a data file created before
/// this rule); returns whether it changed.
pub fn tighten(path: &Path) -> io::Result<bool> {
    let mode = std::fs::metadata(path)?.permissions().mode() & 0o7777;
    if mode & GROUP_OTHER == 0 {
        return Ok(false);
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & !GROUP_OTHER))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path).expect("stat").permissions().mode() & 0o7777
    }

    #[test]
    fn a_new_directory_is_private_and_a_loose_one_is_tightened_with_its_contents() {
        let temp = tempfile::tempdir().expect("tempdir");
        let fresh = temp.path().join("a/b/data");
        assert_eq!(prepare(&fresh).expect("prepare"), Prepared { created: true, tightened: false });
        assert_eq!(mode(&fresh), 0o700);
        assert_eq!(prepare(&fresh).expect("again"), Prepared::default());

        let loose = temp.path().join("loose");
        std::fs::create_dir(&loose).expect("mkdir");
        std::fs::create_dir(loose.join("files")).expect("mkdir");
        std::fs::write(loose.join("files/blob"), b"x").expect("write");
        std::fs::write(loose.join("data.redb"), b"x").expect("write");
        for (path, m) in [(&loose, 0o755), (&loose.join("files"), 0o775), (&loose.join("files/blob"), 0o644)]
        {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(m)).expect("chmod");
        }
        std::fs::set_permissions(loose.join("data.redb"), std::fs::Permissions::from_mode(0o664))
            .expect("chmod");
        assert_eq!(prepare(&loose).expect("prepare"), Prepared { created: false, tightened: true });
        assert_eq!(mode(&loose), 0o700);
        assert_eq!(mode(&loose.join("files")), 0o700);
        assert_eq!(mode(&loose.join("files/blob")), 0o600);
        assert_eq!(mode(&loose.join("data.redb")), 0o600);
    }

    #[test]
    fn created_files_and_directories_ignore_a_permissive_umask() {
        let temp = tempfile::tempdir().expect("tempdir");
        let dir = temp.path().join("x/y");
        create_dir_all(&dir).expect("mkdir");
        assert_eq!(mode(&temp.path().join("x")), 0o700);
        assert_eq!(mode(&dir), 0o700);
        create_private_file(&dir.join("f")).expect("create");
        assert_eq!(mode(&dir.join("f")), 0o600);
        std::fs::set_permissions(dir.join("f"), std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(tighten(&dir.join("f")).expect("tighten"));
        assert_eq!(mode(&dir.join("f")), 0o600);
        assert!(!tighten(&dir.join("f")).expect("again"));
    }
}

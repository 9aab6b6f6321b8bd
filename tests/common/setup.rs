//! What the tests install for themselves, so `cargo test` passes on a fresh clone:
//!
//! - the Python packages of `tests/requirements.txt` (pinned), once, into the project-local
//!   virtual environment `.cache/test-venv` (the system Python is never touched); it is
//!   rebuilt when the requirements file changes;
//! - Debian packages for missing commands (`openssl`, `node`, `npm`, `jq`, `chromium`), with
//!   apt-get, when the tests run as root; otherwise the failure says what to install;
//! - the pinned npm packages of a test folder (`tests/ui`: playwright-core and axe-core), with
//!   `npm ci` from its committed lockfile, when they are missing or differ from the lockfile.
//!
//! Every step is idempotent and serialized across test threads and test processes (a lock
//! file in `.cache/`). A failure panics with the command that failed, its output, and what
//! to do about it.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};

/// The repository root.
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The project-local cache (gitignored): the test venv, the PocketBase peer, lock files.
pub fn cache_dir() -> PathBuf {
    repo().join(".cache")
}

/// Holds the cross-process set-up lock (and the in-process one) while alive.
struct SetupLock {
    _file: File,
    _guard: std::sync::MutexGuard<'static, ()>,
}

fn setup_lock() -> SetupLock {
    static IN_PROCESS: Mutex<()> = Mutex::new(());
    let guard = IN_PROCESS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    std::fs::create_dir_all(cache_dir()).expect("create .cache/");
    let file = File::create(cache_dir().join("setup.lock")).expect("create .cache/setup.lock");
    file.lock().expect("lock .cache/setup.lock");
    SetupLock { _file: file, _guard: guard }
}

fn describe(out: &Output) -> String {
    format!(
        "--- stdout ---\n{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// True when `name` runs (`name --version` starts).
fn has_command(name: &str) -> bool {
    Command::new(name).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

/// True when the tests run as root (they may install packages and mount file systems).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Makes sure `command` exists, installing the Debian package `package` with apt-get when
/// it is missing and the tests run as root; panics with what to do otherwise.
pub fn require_command(command: &str, package: &str) {
    if has_command(command) {
        return;
    }
    let _lock = setup_lock();
    if has_command(command) {
        return;
    }
    let apt = has_command("apt-get");
    assert!(
        is_root() && apt,
        "this test needs `{command}`, which is not installed; install the Debian package `{package}` \
         (apt-get install {package}) or its equivalent, or run the tests as root on Debian/Ubuntu \
         so they install it themselves"
    );
    eprintln!("[setup] installing {package} (apt-get) for `{command}`");
    for args in [vec!["update", "-qq"], vec!["install", "-y", "-qq", "--no-install-recommends", package]] {
        let out = Command::new("apt-get")
            .args(&args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output()
            .expect("run apt-get");
        assert!(
            out.status.success(),
            "apt-get {} failed while installing {package} for `{command}`; install it by hand\n{}",
            args.join(" "),
            describe(&out)
        );
    }
    assert!(has_command(command), "apt-get installed {package} but `{command}` still does not run");
}

/// The virtual environment's directory.
pub fn venv_dir() -> PathBuf {
    cache_dir().join("test-venv")
}

/// A program of the test venv (`python3`, `st`, ...), installing the venv on first use.
pub fn venv_bin(program: &str) -> PathBuf {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(ensure_venv);
    venv_dir().join("bin").join(program)
}

/// The venv's Python interpreter (with aiosmtpd, prometheus_client and schemathesis).
pub fn python() -> PathBuf {
    venv_bin("python3")
}

fn ensure_venv() {
    let requirements_path = repo().join("tests/requirements.txt");
    let requirements = std::fs::read_to_string(&requirements_path).expect("read tests/requirements.txt");
    let venv = venv_dir();
    let stamp = venv.join("installed-requirements.txt");
    let current = || std::fs::read_to_string(&stamp).ok().as_deref() == Some(requirements.as_str());
    if current() {
        return;
    }
    require_command("python3", "python3");
    let _lock = setup_lock();
    if current() {
        return;
    }
    let fix = format!(
        "The tests install their Python tools with\n  python3 -m venv {venv} && {venv}/bin/pip install -r tests/requirements.txt\n\
         This needs python3 with the venv module (Debian: apt-get install python3-venv) and access to \
         PyPI (or a mirror set with PIP_INDEX_URL). Run that command by hand to see the problem; \
         the tests reuse the environment once it is complete.",
        venv = venv.display()
    );
    eprintln!(
        "[setup] creating {} from tests/requirements.txt (once; takes a minute or two)",
        venv.display()
    );
    let _ = std::fs::remove_dir_all(&venv);
    let mut out = Command::new("python3").arg("-m").arg("venv").arg(&venv).output().expect("run python3");
    if !out.status.success() && is_root() && has_command("apt-get") {
        // Debian splits venv (and its pip) out of python3.
        let version = Command::new("python3")
            .args(["-c", "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        let _ = std::fs::remove_dir_all(&venv);
        for package in ["python3-venv".to_string(), format!("python{version}-venv")] {
            let _ = Command::new("apt-get").args(["update", "-qq"]).output();
            let _ = Command::new("apt-get")
                .args(["install", "-y", "-qq", "--no-install-recommends", &package])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .output();
        }
        out = Command::new("python3").arg("-m").arg("venv").arg(&venv).output().expect("run python3");
    }
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&venv);
        panic!("creating the test virtual environment failed.\n{fix}\n{}", describe(&out));
    }
    let out = Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
        .arg(&requirements_path)
        .output()
        .expect("run pip");
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&venv);
        panic!(
            "installing tests/requirements.txt into the test virtual environment failed.\n{fix}\n{}",
            describe(&out)
        );
    }
    std::fs::write(&stamp, &requirements).expect("write the venv stamp");
}

/// Installs the npm packages of `dir` (a folder with `package.json` and a committed
/// `package-lock.json`) with `npm ci`, unless `node_modules` already holds what the lockfile
/// pins (npm's own record, `node_modules/.package-lock.json`, has the same versions).
pub fn npm_ci(dir: &Path) {
    let current = || {
        let lock = std::fs::read_to_string(dir.join("package-lock.json")).ok();
        let installed = std::fs::read_to_string(dir.join("node_modules/.package-lock.json")).ok();
        let packages = |text: Option<String>| {
            text.and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok()).map(|v| {
                v["packages"]
                    .as_object()
                    .map(|map| {
                        map.iter()
                            .filter(|(name, _)| !name.is_empty())
                            .map(|(name, p)| (name.clone(), p["version"].clone()))
                            .collect::<std::collections::BTreeMap<_, _>>()
                    })
                    .unwrap_or_default()
            })
        };
        let pinned = packages(lock);
        pinned.is_some() && pinned == packages(installed)
    };
    if current() {
        return;
    }
    require_command("node", "nodejs");
    require_command("npm", "npm");
    let _lock = setup_lock();
    if current() {
        return;
    }
    eprintln!("[setup] npm ci in {}", dir.display());
    let out = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .output()
        .expect("run npm ci");
    assert!(
        out.status.success(),
        "npm ci in {} failed; it needs the npm registry (or a mirror in npm's config) once per clone\n{}",
        dir.display(),
        describe(&out)
    );
}

//! The embedded admin UI at `/_/`: how it is served (caching, CSP), and a walk through it
//! in a real Chromium (`tests/ui/admin_ui.mjs`, driven by playwright-core, scanned with
//! axe-core): setup with the token, sign in, a collection with a field of every type and a
//! relation, records created, edited, filtered, sorted and deleted (with a file upload whose
//! thumbnail appears), a rule syntax error, sign out; and the table's render times on a
//! seeded collection (`ADMIN_UI_BENCH_RECORDS`, default 2000; BENCHMARKS.md has 100,000).
//!
//! Needs `chromium`, `node` and `npm` (installed with apt-get when missing and running as
//! root) and, once per clone, the npm registry for `npm ci` in `tests/ui`. Screenshots of
//! every page go to `target/admin-ui-screenshots/`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::setup;

const SCRIPT_TIMEOUT: Duration = Duration::from_secs(600);

fn ui_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("ui")
}

/// The target directory (`CARGO_TARGET_DIR` or `./target`).
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// The versioned URL of `name` in the page.
fn asset_url(page: &str, name: &str) -> String {
    let end = page.find(name).expect("the page names the asset") + name.len();
    let start = page[..end].rfind("/_/v/").expect("a versioned URL");
    page[start..end].to_string()
}

#[tokio::test]
async fn the_page_is_never_cached_and_its_assets_are_cached_by_version() {
    let s = common::Server::start();
    let page = s.call("GET", "/_/", None, None).await;
    assert_eq!(page.status, 200);
    let header = |r: &common::Reply, name: &str| {
        r.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
    };
    assert_eq!(header(&page, "cache-control"), "no-cache");
    let csp = header(&page, "content-security-policy");
    for directive in ["default-src 'none'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'"]
    {
        assert!(csp.contains(directive), "{directive} in {csp}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    assert!(!page.text.contains("<style") && !page.text.contains("style="), "no inline styles");
    assert!(!page.text.contains("<script>"), "no inline scripts");
    for name in
        ["app.js", "app.css", "vendor/preact.module.js", "vendor/hooks.module.js", "vendor/htm.module.js"]
    {
        let url = asset_url(&page.text, name);
        let asset = s.call("GET", &url, None, None).await;
        assert_eq!(asset.status, 200, "{url}");
        assert_eq!(header(&asset, "cache-control"), "public, max-age=31536000, immutable", "{url}");
    }
    // Every module the app imports is served (no bare specifiers, nothing from elsewhere).
    let app = s.call("GET", &asset_url(&page.text, "app.js"), None, None).await;
    assert!(!app.text.contains("http://") && !app.text.contains("https://"), "no external URLs in app.js");
    // An old version's URL is served but not cached; a missing file or a climb out is 404.
    let old = s.call("GET", "/_/v/0000000000000000/app.js", None, None).await;
    assert_eq!(old.status, 200);
    assert_eq!(header(&old, "cache-control"), "no-cache");
    for path in ["/_/v/x/nope.js", "/_/v/x/index.html", "/_/v/x/../Cargo.toml", "/_/v/x/refresh-vendor.sh"] {
        assert_eq!(s.call("GET", path, None, None).await.status, 404, "{path}");
    }
    // The API keeps its own, stricter policy.
    let api = s.call("GET", "/api/health", None, None).await;
    assert_eq!(header(&api, "content-security-policy"), "default-src 'none'; frame-ancestors 'none'");
}

/// What the first load costs: every file the page loads, gzipped, under 250 KB.
#[tokio::test]
async fn the_first_load_is_small() {
    let s = common::Server::start();
    let page = s.call("GET", "/_/", None, None).await;
    let version = asset_url(&page.text, "app.js").trim_end_matches("app.js").to_string();
    let mut total = page.text.len();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/admin");
    let mut raw = 0;
    for entry in walk(&dir) {
        let name = entry.strip_prefix(&dir).expect("prefix").to_string_lossy().replace('\\', "/");
        if name.ends_with(".sh")
            || name.ends_with(".md")
            || name == "index.html"
            || name.contains("LICENSE")
            || name.ends_with("VERSIONS")
        {
            continue;
        }
        let asset = s.call("GET", &format!("{version}{name}"), None, None).await;
        assert_eq!(asset.status, 200, "{name}");
        raw += asset.text.len();
        total += gzip_len(asset.text.as_bytes());
    }
    assert!(total < 250 * 1024, "first load is {total} bytes gzipped ({raw} raw)");
    println!("admin UI first load: {total} bytes gzipped, {raw} bytes raw");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// The gzip size of `data` (`gzip -9c`).
fn gzip_len(data: &[u8]) -> usize {
    use std::io::Write;
    let mut child = Command::new("gzip")
        .arg("-9c")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run gzip");
    child.stdin.take().expect("stdin").write_all(data).expect("write to gzip");
    child.wait_with_output().expect("gzip output").stdout.len()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_person_walks_through_the_admin_ui_in_chromium() {
    tokio::task::spawn_blocking(|| {
        setup::require_command("chromium", "chromium");
        setup::npm_ci(&ui_dir());
    })
    .await
    .expect("set-up task");
    let bench = std::env::var("ADMIN_UI_BENCH_RECORDS").unwrap_or_else(|_| "2000".to_string());
    let server = common::Server::start_with(common::StartOptions {
        env: vec![
            ("BACKBONE_LIMITS_MAX_BATCH_REQUESTS".into(), "500".into()),
            ("BACKBONE_RATE_LIMITS_ENABLED".into(), "false".into()),
        ],
        args: vec![],
    });
    let token = server.setup_token.clone().expect("a fresh server prints a setup token");
    let shots = target_dir().join("admin-ui-screenshots");
    let _ = std::fs::remove_dir_all(&shots);
    let base = server.base.clone();
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new("node");
        cmd.arg("tests/ui/admin_ui.mjs")
            .arg(&base)
            .arg(&token)
            .arg(&shots)
            .arg(&bench)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdin(Stdio::null());
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("run node");
        let deadline = Instant::now() + SCRIPT_TIMEOUT;
        loop {
            match child.try_wait().expect("wait for node") {
                Some(_) => break child.wait_with_output().expect("node output"),
                None if Instant::now() > deadline => {
                    let _ = child.kill();
                    panic!("tests/ui/admin_ui.mjs did not finish within {SCRIPT_TIMEOUT:?}");
                }
                None => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    })
    .await
    .expect("node task");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "the admin UI walk failed ({})\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        out.status
    );
    assert!(
        stdout.lines().any(|l| l.starts_with("admin ui: ") && l.contains(" checks passed")),
        "the script exited 0 without its summary line\n{stdout}\n{stderr}"
    );
    println!("admin UI walk took {:.1} s", started.elapsed().as_secs_f64());
}

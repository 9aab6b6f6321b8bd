//! The data directory is private (security finding 7): it holds the server secret and the
//! token keys, so nothing in it may be readable by other local users, whatever umask the
//! server was started with.

use std::io::Cursor;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::{multipart, Server, StartOptions};

fn start_with_umask_022(dir: &Path) -> Server {
    Server::start_in_with_umask(dir, StartOptions::default(), 0o022)
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).expect("stat").permissions().mode() & 0o7777
}

/// Every entry under `dir` (and `dir` itself) with its mode, not following links.
fn walk(dir: &Path) -> Vec<(PathBuf, u32, &'static str)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).expect("stat");
        let kind = match meta.file_type() {
            t if t.is_dir() => "dir",
            t if t.is_socket() => "socket",
            t if t.is_symlink() => "symlink",
            _ => "file",
        };
        out.push((path.clone(), meta.permissions().mode() & 0o7777, kind));
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path).expect("read_dir").flatten() {
                stack.push(entry.path());
            }
        }
    }
    out
}

#[track_caller]
fn assert_private(dir: &Path) -> Vec<(PathBuf, u32, &'static str)> {
    let entries = walk(dir);
    let loose: Vec<String> = entries
        .iter()
        .filter(|(_, mode, _)| mode & 0o077 != 0)
        .map(|(path, mode, kind)| format!("{kind} {mode:04o} {}", path.display()))
        .collect();
    assert!(loose.is_empty(), "group/other-accessible entries in the data dir:\n{}", loose.join("\n"));
    entries
}

fn png(width: u32, height: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(width, height, |x, y| image::Rgb([x as u8, y as u8, 128]));
    let mut bytes = Cursor::new(Vec::new());
    img.write_to(&mut bytes, image::ImageFormat::Png).expect("encode png");
    bytes.into_inner()
}

/// Creates a searchable collection with an image field, one record with an uploaded PNG,
/// its thumbnail, and waits until the search index has committed it.
async fn populate(s: &Server) {
    let su = s.setup_superuser().await;
    let r = s
        .call(
            "POST",
            "/api/collections",
            Some(&su),
            Some(json!({
                "name": "docs",
                "listRule": "", "viewRule": "", "createRule": "",
                "fields": [
                    {"name": "title", "type": "text"},
                    {"name": "image", "type": "file", "maxSize": 1000000,
                     "mimeTypes": ["image/png"], "thumbs": ["20x20"]}
                ],
                "search": {"enabled": true, "fields": [{"name": "title"}]}
            })),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let (content_type, body) = multipart(
        &[("title", "private words")],
        &[("image", "pic.png", "application/octet-stream", &png(64, 48))],
    );
    let r = s.raw("POST", "/api/collections/docs/records", None, Some(&content_type), body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let id = r.body["id"].as_str().expect("id").to_string();
    let name = r.body["image"].as_str().expect("file name").to_string();
    let path = format!("/api/files/docs/{id}/{name}?thumb=20x20");
    let thumb = s.client.get(s.url(&path)).send().await.expect("thumb");
    assert_eq!(thumb.status(), 200);
    // The index commits at most once a second; wait until the record is searchable.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = s.call("GET", "/api/collections/docs/search?q=private", None, None).await;
        if r.status == 200 && r.body["totalItems"].as_u64() == Some(1) {
            break;
        }
        assert!(Instant::now() < deadline, "record never indexed: {}", r.text);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Let the request log flush (every 500 ms) so its writes happened too.
    tokio::time::sleep(Duration::from_millis(700)).await;
}

#[tokio::test]
async fn a_fresh_data_dir_and_everything_in_it_is_private_under_umask_022() {
    let temp = tempfile::tempdir().expect("tempdir");
    let dir = temp.path().join("nested/backbone_data");
    let s = start_with_umask_022(&dir);
    populate(&s).await;
    let entries = assert_private(&dir);
    assert_eq!(mode(&dir), 0o700);
    let has = |suffix: &str| entries.iter().any(|(p, _, _)| p.to_string_lossy().ends_with(suffix));
    assert!(has("data.redb"), "the data file was walked");
    assert!(has("backbone.sock"), "the admin socket was walked");
    assert!(has("search/meta.json"), "the search index was walked");
    assert!(entries.iter().any(|(p, _, _)| p.to_string_lossy().contains("/thumbs_")), "no variant walked");
    assert!(entries.iter().any(|(p, _, _)| p.to_string_lossy().contains(".png")), "the blob was walked");
    // Uploads and search segments written while serving are private too.
    let (content_type, body) = multipart(
        &[("title", "more words")],
        &[("image", "b.png", "application/octet-stream", &png(16, 16))],
    );
    let r = s.raw("POST", "/api/collections/docs/records", None, Some(&content_type), body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_private(&dir);
}

#[tokio::test]
async fn a_group_or_world_accessible_data_dir_is_tightened_at_start_with_a_warning() {
    let temp = tempfile::tempdir().expect("tempdir");
    let dir = temp.path().join("data");
    let mut s = start_with_umask_022(&dir);
    populate(&s).await;
    assert_eq!(s.terminate(), Some(0));
    drop(s);
    // As a data dir made by an older version under umask 022 (or copied loosely) looks.
    let mut loosened = 0;
    for (path, _, kind) in walk(&dir) {
        let m = if kind == "dir" { 0o755 } else { 0o644 };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(m)).expect("chmod");
        loosened += 1;
    }
    assert!(loosened > 5);
    assert_eq!(mode(&dir), 0o755);
    assert_eq!(mode(&dir.join("data.redb")), 0o644);

    let s = start_with_umask_022(&dir);
    assert_eq!(mode(&dir), 0o700);
    assert_private(&dir);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let warned =
            s.stderr.lock().expect("log").iter().any(|l| {
                l.contains("WARN") && l.contains("now 0700") && l.contains(&dir.display().to_string())
            });
        if warned {
            break;
        }
        assert!(Instant::now() < deadline, "no warning: {:?}", s.stderr.lock().expect("log"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The data is still there and served.
    let r = s.call("GET", "/api/collections/docs/records", None, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["totalItems"], 1);
}

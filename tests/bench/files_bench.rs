//! Files benchmark (a program, not a test): image variants and thumbnail serving, Backbone
//! (release binary) against the real PocketBase (`tests/peers/pocketbase.sh`) in one run,
//! both on 127.0.0.1.
//!
//! Phases:
//! 1. In-process variant pipeline: decode a 12-megapixel JPEG once, render 3 sizes, encode
//!    WebP (`files::thumbs::variants`), sequentially and on 2 threads: images/s.
//! 2. End to end: upload N such JPEGs to a file field listing the same 3 sizes. Backbone
//!    produces them in its `files.thumbs` jobs (timed from the first upload until every
//!    variant is on disk); PocketBase produces thumbs on request only, so each of its images
//!    gets the 3 `?thumb=` requests (2 images in flight), timed likewise. Images/s each, and
//!    the size of one variant from each.
//! 3. Serving a cached thumbnail: C concurrent keep-alive clients GET the same `?thumb=` URL
//!    for D seconds on each server: requests/s.
//!
//! Run: `cargo build --release && cargo bench --bench files_bench`. Knobs:
//! `FILES_BENCH_N` images (default 8), `FILES_BENCH_SECS` (default 5), `FILES_BENCH_CONC`
//! (default 16), `FILES_BENCH_PB` (peer script, default `tests/peers/pocketbase.sh`,
//! from the repository root; set to `none` to skip PocketBase).

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use backbone::files::thumbs::{self, DecodeLimits, ThumbSize};
use image::{DynamicImage, RgbImage};
use serde_json::{json, Value};

const SIZES: [&str; 3] = ["1200x0", "400x400", "100x100f"];
const EMAIL: &str = "bench-admin@example.com";
const PASSWORD: &str = "bench-admin-password-123";
const BOUNDARY: &str = "benchboundaryXq7";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A 4000x3000 photo-like JPEG (gradients plus noise, so it compresses like a photo).
fn twelve_megapixel_jpeg(seed: u32) -> Vec<u8> {
    let mut state = seed.wrapping_mul(2_654_435_761).max(1);
    let img = RgbImage::from_fn(4000, 3000, |x, y| {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let n = (state & 31) as u8;
        image::Rgb([((x / 16) as u8).wrapping_add(n), ((y / 12) as u8).wrapping_add(n), ((x + y) / 28) as u8])
    });
    let mut out = Cursor::new(Vec::new());
    let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85);
    DynamicImage::ImageRgb8(img).write_with_encoder(encoder).expect("encode jpeg");
    out.into_inner()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("port")
}

fn multipart(field: &str, name: &str, bytes: &[u8]) -> Vec<u8> {
    let mut body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{name}\"\r\nContent-Type: image/jpeg\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    body
}

struct Peer {
    name: &'static str,
    base: String,
    token: String,
    child: Option<Child>,
    files_dir: Option<PathBuf>,
    stop: Option<(String, u16)>,
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
            let _ = child.wait();
        }
        if let Some((script, port)) = &self.stop {
            let _ = Command::new(script).arg("stop").arg(port.to_string()).status();
        }
    }
}

async fn wait_healthy(client: &reqwest::Client, base: &str) {
    for _ in 0..600 {
        if let Ok(r) = client.get(format!("{base}/api/health")).send().await {
            if r.status().is_success() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{base} did not become healthy");
}

async fn start_backbone(client: &reqwest::Client, work: &Path) -> Peer {
    let binary = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/backbone");
    let binary = std::env::var("CARGO_TARGET_DIR")
        .map(|d| PathBuf::from(d).join("release/backbone"))
        .ok()
        .filter(|p| p.exists())
        .unwrap_or(binary);
    let dir = work.join("backbone_data");
    let ok = Command::new(&binary)
        .args(["superuser", "upsert", EMAIL, PASSWORD, "--dir"])
        .arg(&dir)
        .stdout(Stdio::null())
        .status()
        .expect("run backbone superuser upsert");
    assert!(ok.success(), "superuser upsert failed");
    let port = free_port();
    let child = Command::new(&binary)
        .args(["serve", "--http", &format!("127.0.0.1:{port}"), "--dir"])
        .arg(&dir)
        .env("BACKBONE_RATE_LIMITS_ENABLED", "false")
        .env("BACKBONE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start backbone");
    let base = format!("http://127.0.0.1:{port}");
    wait_healthy(client, &base).await;
    let r: Value = client
        .post(format!("{base}/api/collections/_superusers/auth-with-password"))
        .json(&json!({"identity": EMAIL, "password": PASSWORD}))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("login json");
    let token = r["token"].as_str().expect("token").to_string();
    println!("backbone: {} ({})", binary.display(), base);
    Peer { name: "Backbone", base, token, child: Some(child), files_dir: Some(dir.join("files")), stop: None }
}

fn start_pocketbase(work: &Path) -> Option<Peer> {
    let script = std::env::var("FILES_BENCH_PB").unwrap_or_else(|_| {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/pocketbase.sh").to_string_lossy().into_owned()
    });
    if script == "none" {
        return None;
    }
    let port = free_port();
    let out = Command::new(&script)
        .args(["start", &port.to_string()])
        .arg(work.join("pb_data"))
        .env("PB_SU_EMAIL", EMAIL)
        .env("PB_SU_PASSWORD", PASSWORD)
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!("pocketbase.sh failed: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let get = |k: &str| text.lines().find_map(|l| l.strip_prefix(&format!("{k}="))).map(str::to_string);
    println!("pocketbase {} ({})", get("VERSION").unwrap_or_default(), get("BASE_URL").unwrap_or_default());
    Some(Peer {
        name: "PocketBase",
        base: get("BASE_URL")?,
        token: get("SUPERUSER_TOKEN")?,
        child: None,
        files_dir: None,
        stop: Some((script, port)),
    })
}

async fn create_collection(client: &reqwest::Client, peer: &Peer) {
    let body = json!({
        "name": "photos",
        "type": "base",
        "listRule": "", "viewRule": "", "createRule": "", "updateRule": "", "deleteRule": "",
        "fields": [{"name": "img", "type": "file", "maxSelect": 1, "maxSize": 50_000_000,
                    "mimeTypes": ["image/jpeg"], "thumbs": SIZES}]
    });
    let r = client
        .post(format!("{}/api/collections", peer.base))
        .header("Authorization", &peer.token)
        .json(&body)
        .send()
        .await
        .expect("create collection");
    assert!(
        r.status().is_success(),
        "{}: create collection: {}",
        peer.name,
        r.text().await.unwrap_or_default()
    );
}

async fn upload(client: &reqwest::Client, peer: &Peer, bytes: &[u8], i: usize) -> (String, String) {
    let r = client
        .post(format!("{}/api/collections/photos/records", peer.base))
        .header("Content-Type", format!("multipart/form-data; boundary={BOUNDARY}"))
        .body(multipart("img", &format!("photo{i}.jpg"), bytes))
        .send()
        .await
        .expect("upload");
    let status = r.status();
    let v: Value = r.json().await.expect("upload json");
    assert!(status.is_success(), "{}: upload: {v}", peer.name);
    (v["id"].as_str().expect("id").to_string(), v["img"].as_str().expect("img").to_string())
}

fn count_variants(files: &Path) -> usize {
    let mut n = 0;
    for c in std::fs::read_dir(files).into_iter().flatten().flatten() {
        for r in std::fs::read_dir(c.path()).into_iter().flatten().flatten() {
            for t in std::fs::read_dir(r.path()).into_iter().flatten().flatten() {
                if t.file_name().to_string_lossy().starts_with("thumbs_") {
                    n += std::fs::read_dir(t.path())
                        .into_iter()
                        .flatten()
                        .flatten()
                        .filter(|e| e.file_name().to_string_lossy().ends_with(".webp"))
                        .count();
                }
            }
        }
    }
    n
}

/// Serves one URL from `conc` keep-alive clients for `secs`: requests/s.
async fn serve_rate(url: &str, conc: usize, secs: u64) -> f64 {
    let done = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let (url, done) = (url.to_string(), done.clone());
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::builder().pool_max_idle_per_host(1).build().expect("client");
            while Instant::now() < deadline {
                if let Ok(r) = client.get(&url).send().await {
                    if r.status().is_success() && r.bytes().await.is_ok() {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    let start = Instant::now();
    for t in tasks {
        let _ = t.await;
    }
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

/// The allocator the `backbone` binary ships with (`src/main.rs`), so the figures are the
/// product's. The server also runs with `MIMALLOC_PURGE_DELAY=0`; set it in the environment
/// to match that exactly.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let n = env_usize("FILES_BENCH_N", 8).max(1);
    let secs = env_usize("FILES_BENCH_SECS", 5).max(1) as u64;
    let conc = env_usize("FILES_BENCH_CONC", 16).max(1);
    println!("generating {n} 12-megapixel JPEGs (4000x3000)...");
    let images: Vec<Vec<u8>> = (0..n as u32).map(twelve_megapixel_jpeg).collect();
    println!("JPEG size: {:.1} MB each", images[0].len() as f64 / 1e6);
    let sizes: Vec<ThumbSize> = SIZES.iter().map(|s| ThumbSize::parse(s).expect("size")).collect();
    let limits = DecodeLimits { max_side: 16_384, max_alloc_bytes: 512 << 20 };

    // Phase 1: the pipeline in process.
    let start = Instant::now();
    for img in &images {
        thumbs::variants(img, &sizes, limits).expect("variants");
    }
    let sequential = n as f64 / start.elapsed().as_secs_f64();
    let start = Instant::now();
    std::thread::scope(|scope| {
        for half in images.chunks(n.div_ceil(2)) {
            let sizes = &sizes;
            scope.spawn(move || {
                for img in half {
                    thumbs::variants(img, sizes, limits).expect("variants");
                }
            });
        }
    });
    let parallel = n as f64 / start.elapsed().as_secs_f64();
    println!("\n[1] in-process decode + 3 sizes + WebP: {sequential:.2} images/s (1 thread), {parallel:.2} images/s (2 threads)");

    let work = tempfile::tempdir().expect("work dir");
    let client = reqwest::Client::builder().timeout(Duration::from_secs(300)).build().expect("client");
    let backbone = start_backbone(&client, work.path()).await;
    let pocketbase = start_pocketbase(work.path());
    let mut results: Vec<(&str, f64, usize, f64)> = Vec::new();
    for peer in std::iter::once(&backbone).chain(pocketbase.as_ref()) {
        create_collection(&client, peer).await;
        let start = Instant::now();
        let mut uploaded = Vec::new();
        for (i, img) in images.iter().enumerate() {
            uploaded.push(upload(&client, peer, img, i).await);
        }
        let upload_secs = start.elapsed().as_secs_f64();
        if let Some(files) = &peer.files_dir {
            // Backbone: the upload enqueued the variants; wait until all are on disk.
            while count_variants(files) < n * SIZES.len() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        } else {
            // PocketBase: each size is produced by its first request (2 images in flight).
            let base = peer.base.clone();
            let pairs = Arc::new(std::sync::Mutex::new(uploaded.clone()));
            let mut tasks = Vec::new();
            for _ in 0..2 {
                let (pairs, client, base) = (pairs.clone(), client.clone(), base.clone());
                tasks.push(tokio::spawn(async move {
                    loop {
                        let next = pairs.lock().ok().and_then(|mut p| p.pop());
                        let Some((id, name)) = next else { break };
                        for size in SIZES {
                            let r = client
                                .get(format!("{base}/api/files/photos/{id}/{name}?thumb={size}"))
                                .send()
                                .await
                                .expect("thumb");
                            assert!(r.status().is_success());
                            let _ = r.bytes().await;
                        }
                    }
                }));
            }
            for t in tasks {
                t.await.expect("thumb task");
            }
        }
        let total = start.elapsed().as_secs_f64();
        let (id, name) = &uploaded[0];
        let url = format!("{}/api/files/photos/{id}/{name}?thumb=400x400", peer.base);
        let thumb = client.get(&url).send().await.expect("thumb");
        let ct = thumb.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let thumb_bytes = thumb.bytes().await.map(|b| b.len()).unwrap_or(0);
        let rate = serve_rate(&url, conc, secs).await;
        println!(
            "\n[2] {}: {n} uploads in {upload_secs:.2} s; all {} variants done after {total:.2} s = {:.2} images/s; 400x400 variant: {thumb_bytes} bytes ({ct})",
            peer.name,
            n * SIZES.len(),
            n as f64 / total
        );
        println!("[3] {}: cached 400x400 thumb, {conc} clients, {secs} s: {rate:.0} req/s", peer.name);
        results.push((peer.name, n as f64 / total, thumb_bytes, rate));
    }
    if let [b, p] = results.as_slice() {
        println!("\nratios Backbone / PocketBase:");
        println!(
            "  variant throughput (images/s, 12 MP JPEG -> 3 sizes): {:.2} / {:.2} = {:.2}x",
            b.1,
            p.1,
            b.1 / p.1
        );
        println!("  cached thumb serving (req/s): {:.0} / {:.0} = {:.2}x", b.3, p.3, b.3 / p.3);
        println!("  400x400 variant size: {} / {} bytes = {:.2}x", b.2, p.2, b.2 as f64 / p.2.max(1) as f64);
    }
}

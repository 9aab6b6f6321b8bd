//! Image decoding stays inside the memory cap (security finding 9): the decode budget is a
//! quarter of `max_rss_mb`, shared by every decode running at once, so concurrent
//! thumbnails of large images cannot take the server past its cap.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::{multipart, Server, StartOptions};

const CAP_MB: u64 = 256;

/// CRC-32 (PNG chunks).
fn crc32(parts: &[&[u8]]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for part in parts {
        for &b in *part {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
            }
        }
    }
    !crc
}

/// Deflate bits, least significant first.
struct Bits {
    out: Vec<u8>,
    acc: u64,
    n: u32,
}

impl Bits {
    fn put(&mut self, value: u32, bits: u32) {
        self.acc |= u64::from(value) << self.n;
        self.n += bits;
        while self.n >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.n -= 8;
        }
    }
    /// A Huffman code, most significant bit first.
    fn code(&mut self, code: u32, bits: u32) {
        let reversed = code.reverse_bits() >> (32 - bits);
        self.put(reversed, bits);
    }
    fn finish(mut self) -> Vec<u8> {
        if self.n > 0 {
            self.out.push(self.acc as u8);
        }
        self.out
    }
}

/// A valid, fully decodable `side`×`side` RGBA8 PNG of transparent black pixels, built
/// without holding its pixels: the zlib stream of (4·side + 1)·side zero bytes is one fixed-
/// Huffman block of a literal 0 and matches of 258 at distance 1 (~1.6 MB for 8000²).
fn big_png(side: u32) -> Vec<u8> {
    let total = (u64::from(side) * 4 + 1) * u64::from(side);
    let mut bits = Bits { out: Vec::new(), acc: 0, n: 0 };
    bits.put(1, 1); // BFINAL
    bits.put(1, 2); // fixed Huffman codes
    let literal_zero = |b: &mut Bits| b.code(0b0011_0000, 8);
    literal_zero(&mut bits);
    let rest = total - 1;
    for _ in 0..rest / 258 {
        bits.code(0b1100_0101, 8); // length code 285: 258
        bits.code(0, 5); // distance code 0: 1
    }
    for _ in 0..rest % 258 {
        literal_zero(&mut bits);
    }
    bits.code(0, 7); // end of block
    let mut zlib = vec![0x78, 0x01];
    zlib.extend(bits.finish());
    let adler = (((total % 65521) as u32) << 16) | 1;
    zlib.extend(adler.to_be_bytes());

    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = [side.to_be_bytes(), side.to_be_bytes()].concat();
    ihdr.extend([8, 6, 0, 0, 0]);
    for (kind, data) in [(&b"IHDR"[..], &ihdr[..]), (b"IDAT", &zlib[..]), (b"IEND", &[][..])] {
        png.extend((data.len() as u32).to_be_bytes());
        png.extend(kind);
        png.extend(data);
        png.extend(crc32(&[kind, data]).to_be_bytes());
    }
    png
}

/// The server process's peak resident memory (VmHWM), in MiB.
fn peak_rss_mb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM");
    let kb: u64 = line.split_whitespace().nth(1).expect("value").parse().expect("number");
    kb / 1024
}

#[test]
fn the_generated_png_decodes() {
    let png = big_png(300);
    let img = image::load_from_memory(&png).expect("decodes");
    assert_eq!((img.width(), img.height()), (300, 300));
    assert!(big_png(8000).len() < 2_000_000);
}

#[tokio::test]
async fn concurrent_thumbnails_of_huge_images_stay_under_the_memory_cap() {
    let s = Server::start_with(StartOptions {
        env: vec![("BACKBONE_LIMITS_MAX_RSS_MB".into(), CAP_MB.to_string())],
        ..StartOptions::default()
    });
    let su = s.setup_superuser().await;
    let r = s
        .call(
            "POST",
            "/api/collections",
            Some(&su),
            Some(json!({
                "name": "pics", "listRule": "", "viewRule": "", "createRule": "",
                "fields": [{"name": "image", "type": "file", "maxSize": 5_000_000,
                            "mimeTypes": ["image/png"], "thumbs": ["50x50"]}]
            })),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    // 8000² RGBA: 244 MiB decoded each, allowed by the old per-decode limit (512 MiB) and
    // together far over the 256 MiB cap; the budget (64 MiB) refuses them. 3600² RGBA:
    // 49 MiB each, within the budget one at a time, not both at once.
    let huge = big_png(8000);
    let large = big_png(3600);
    let mut files = Vec::new();
    for (name, bytes) in
        [("huge1.png", &huge), ("huge2.png", &huge), ("large1.png", &large), ("large2.png", &large)]
    {
        let (content_type, body) = multipart(&[], &[("image", name, "image/png", bytes)]);
        let r = s.raw("POST", "/api/collections/pics/records", None, Some(&content_type), body).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let id = r.body["id"].as_str().expect("id").to_string();
        let stored = r.body["image"].as_str().expect("name").to_string();
        files.push((name, format!("/api/files/pics/{id}/{stored}")));
    }
    let pid = s.child.id();
    let get = |path: String| {
        let client = s.client.clone();
        let url = s.url(&path);
        async move {
            let res = client.get(url).send().await.expect("download");
            let status = res.status().as_u16();
            let content_type = res
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let bytes = res.bytes().await.expect("body").len();
            (status, content_type, bytes)
        }
    };
    // The huge ones, both at once (their upload jobs are decoding meanwhile too).
    let (a, b) = tokio::join!(
        get(format!("{}?thumb=50x50", files[0].1)),
        get(format!("{}?thumb=100x100", files[1].1))
    );
    let peak = peak_rss_mb(pid);
    assert!(peak <= CAP_MB, "peak RSS {peak} MiB over the {CAP_MB} MiB cap after the huge images");
    for (status, content_type, bytes) in [&a, &b] {
        assert_eq!(*status, 200);
        // Over the budget: the original is served, as for any image that cannot be decoded.
        assert_eq!(content_type, "image/png");
        assert_eq!(*bytes, huge.len());
    }
    // The large ones, both at once: made one after the other, both served as variants.
    let (c, d) = tokio::join!(
        get(format!("{}?thumb=50x50", files[2].1)),
        get(format!("{}?thumb=100x100", files[3].1))
    );
    for (status, content_type, _) in [&c, &d] {
        assert_eq!(*status, 200);
        assert_eq!(content_type, "image/webp");
    }
    // Let the upload jobs finish (they die at once for the huge images).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = s.call("GET", "/api/jobs?kind=files.thumbs", Some(&su), None).await;
        let items = r.body["items"].as_array().cloned().unwrap_or_default();
        let busy = items
            .iter()
            .any(|j| matches!(j["state"].as_str(), Some("available" | "running" | "retrying" | "scheduled")));
        if r.status == 200 && !items.is_empty() && !busy {
            break;
        }
        assert!(Instant::now() < deadline, "thumb jobs still busy: {}", r.text);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let peak = peak_rss_mb(pid);
    eprintln!("peak RSS {peak} MiB (cap {CAP_MB} MiB)");
    assert!(peak <= CAP_MB, "peak RSS {peak} MiB over the {CAP_MB} MiB cap");
}

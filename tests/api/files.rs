//! File fields: multipart uploads (curl, as a shell user would send them), downloads with
//! access rules, tokens, ranges and caching, image variants, size and type limits, and
//! blob clean-up after commits and restarts.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use image::{DynamicImage, ImageFormat, RgbImage};
use serde_json::{json, Value};

use crate::common::{Server, StartOptions};

const ALL_THUMBS: [&str; 6] = ["60x60", "60x30t", "60x30b", "60x60f", "0x50", "150x0"];

/// A collection with a single text file field and an image gallery.
async fn with_docs(s: &Server, t: &str, view_rule: Value) -> Value {
    let body = json!({
        "name": "docs",
        "listRule": view_rule.clone(),
        "viewRule": view_rule,
        "createRule": "",
        "updateRule": "",
        "deleteRule": "",
        "fields": [
            {"name": "title", "type": "text"},
            {"name": "doc", "type": "file", "maxSize": 20000},
            {"name": "gallery", "type": "file", "maxSelect": 5, "maxSize": 2000000,
             "mimeTypes": ["image/png", "image/jpeg", "image/gif", "image/webp"], "thumbs": ALL_THUMBS},
            {"name": "secret", "type": "file", "protected": true}
        ]
    });
    let r = s.call("POST", "/api/collections", Some(t), Some(body)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body.clone()
}

/// Runs curl with `args` against `path`; returns (status, body as JSON or text).
fn curl(s: &Server, method: &str, path: &str, token: Option<&str>, args: &[String]) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.arg("-s").arg("-S").arg("-X").arg(method).arg("-o").arg("-").arg("-w").arg("\n%{http_code}");
    if let Some(t) = token {
        cmd.arg("-H").arg(format!("Authorization: {t}"));
    }
    cmd.args(args).arg(s.url(path));
    let out = cmd.output().expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn form(parts: &[(&str, &str)]) -> Vec<String> {
    parts.iter().flat_map(|(k, v)| ["-F".to_string(), format!("{k}={v}")]).collect()
}

fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write fixture");
    path.display().to_string()
}

fn encoded(img: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    match format {
        ImageFormat::WebP => {
            let encoder = image::codecs::webp::WebPEncoder::new_lossless(&mut out);
            DynamicImage::ImageRgba8(img.to_rgba8()).write_with_encoder(encoder).expect("encode webp");
        }
        ImageFormat::Gif => {
            DynamicImage::ImageRgba8(img.to_rgba8()).write_to(&mut out, format).expect("encode gif")
        }
        _ => DynamicImage::ImageRgb8(img.to_rgb8()).write_to(&mut out, format).expect("encode"),
    }
    out.into_inner()
}

fn picture(w: u32, h: u32) -> DynamicImage {
    DynamicImage::ImageRgb8(RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 90])
    }))
}

async fn get_bytes(
    s: &Server,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let mut req = s.client.get(s.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = req.send().await.expect("request");
    let status = res.status().as_u16();
    let h = res.headers().clone();
    (status, h, res.bytes().await.expect("body").to_vec())
}

fn header<'a>(h: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
}

fn tmp_entries(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir.join("files/.tmp"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + crate::common::PATIENCE;
    while !check() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn curl_multipart_upload_stores_files_and_downloads_them() {
    let s = Server::start();
    let t = s.setup_superuser().await;
    let coll = with_docs(&s, &t, json!("")).await;
    let fx = tempfile::tempdir().expect("fixtures");
    let txt = write_file(fx.path(), "Hello World.txt", b"hello files\n");
    let png = write_file(fx.path(), "a.png", &encoded(&picture(30, 20), ImageFormat::Png));
    let jpg = write_file(fx.path(), "b.jpg", &encoded(&picture(30, 20), ImageFormat::Jpeg));
    let args = form(&[
        ("title", "first"),
        ("doc", &format!("@{txt};type=application/x-evil")),
        ("gallery", &format!("@{png}")),
        ("gallery", &format!("@{jpg}")),
    ]);
    let (status, text) = curl(&s, "POST", "/api/collections/docs/records", None, &args);
    assert_eq!(status, 200, "{text}");
    let rec: Value = serde_json::from_str(&text).expect("record json");
    assert_eq!(rec["title"], "first");
    let doc = rec["doc"].as_str().expect("single file field is a string");
    assert!(
        doc.starts_with("hello_world_") && doc.ends_with(".txt") && doc.len() == "hello_world_".len() + 14,
        "{doc}"
    );
    let gallery = rec["gallery"].as_array().expect("multi file field is an array");
    assert_eq!(gallery.len(), 2);
    assert_eq!(rec["secret"], "");
    let id = rec["id"].as_str().expect("id");
    let blob = s.dir.join("files").join(coll["id"].as_str().expect("cid")).join(id).join(doc);
    assert_eq!(std::fs::read(&blob).expect("blob on disk"), b"hello files\n");

    let (status, h, body) = get_bytes(&s, &format!("/api/files/docs/{id}/{doc}"), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(body, b"hello files\n");
    assert_eq!(header(&h, "content-type"), "text/plain; charset=utf-8", "sniffed, not the client's type");
    assert_eq!(header(&h, "x-content-type-options"), "nosniff");
    assert!(header(&h, "content-disposition").starts_with("inline"), "{h:?}");
    // An unknown name or record answers 404.
    let (status, _, _) = get_bytes(&s, &format!("/api/files/docs/{id}/nope_0123456789.txt"), &[]).await;
    assert_eq!(status, 404);
    let (status, _, _) = get_bytes(&s, &format!("/api/files/docs/aaaaaaaaaaaaaaa/{doc}"), &[]).await;
    assert_eq!(status, 404);
    assert!(tmp_entries(&s.dir).is_empty(), "no temp file is left");
}

#[tokio::test]
async fn append_and_remove_modifiers_change_the_list_and_released_blobs_are_removed_after_commit() {
    let s = Server::start();
    let t = s.setup_superuser().await;
    let coll = with_docs(&s, &t, json!("")).await;
    let fx = tempfile::tempdir().expect("fixtures");
    let png = write_file(fx.path(), "a.png", &encoded(&picture(20, 20), ImageFormat::Png));
    let (status, text) =
        curl(&s, "POST", "/api/collections/docs/records", None, &form(&[("gallery", &format!("@{png}"))]));
    assert_eq!(status, 200, "{text}");
    let rec: Value = serde_json::from_str(&text).expect("json");
    let id = rec["id"].as_str().expect("id").to_string();
    let first = rec["gallery"][0].as_str().expect("name").to_string();

    let path = format!("/api/collections/docs/records/{id}");
    let (status, text) = curl(&s, "PATCH", &path, None, &form(&[("gallery+", &format!("@{png}"))]));
    assert_eq!(status, 200, "{text}");
    let rec: Value = serde_json::from_str(&text).expect("json");
    let list: Vec<&str> = rec["gallery"].as_array().expect("list").iter().filter_map(Value::as_str).collect();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0], first, "appended after the existing file");

    // A client cannot point a record at a name it did not upload.
    let r = s.call("PATCH", &path, None, Some(json!({"gallery": [first, "other_0123456789.png"]}))).await;
    r.assert_problem(400).assert_field_error("gallery", "validation_invalid_file");

    let blob = s.dir.join("files").join(coll["id"].as_str().expect("cid")).join(&id).join(&first);
    assert!(blob.exists());
    let r = s.call("PATCH", &path, None, Some(json!({"gallery-": [first]}))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["gallery"].as_array().map(Vec::len), Some(1));
    wait_until("the released blob is removed by its job", || !blob.exists()).await;
    let (status, _, _) = get_bytes(&s, &format!("/api/files/docs/{id}/{first}"), &[]).await;
    assert_eq!(status, 404);

    // Deleting the record releases the rest.
    let second = r.body["gallery"][0].as_str().expect("name").to_string();
    let second_blob = blob.with_file_name(&second);
    assert!(second_blob.exists());
    let r = s.call("DELETE", &path, None, None).await;
    assert_eq!(r.status, 204, "{}", r.text);
    wait_until("the deleted record's blobs are removed", || !second_blob.exists()).await;
}

#[tokio::test]
async fn sdk_style_json_payload_and_plain_form_values_are_both_read() {
    let s = Server::start();
    let t = s.setup_superuser().await;
    with_docs(&s, &t, json!("")).await;
    let fx = tempfile::tempdir().expect("fixtures");
    let txt = write_file(fx.path(), "x.txt", b"abc");
    let args = form(&[("@jsonPayload", r#"{"title":"from json"}"#), ("doc", &format!("@{txt}"))]);
    let (status, text) = curl(&s, "POST", "/api/collections/docs/records", None, &args);
    assert_eq!(status, 200, "{text}");
    let rec: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(rec["title"], "from json");
    // Multipart without any file works too.
    let (status, text) =
        curl(&s, "POST", "/api/collections/docs/records", None, &form(&[("title", "plain")]));
    assert_eq!(status, 200, "{text}");
}

#[tokio::test]
async fn wrong_content_type_answers_400_and_leaves_nothing_behind() {
    let s = Server::start();
    let t = s.setup_superuser().await;
    with_docs(&s, &t, json!("")).await;
    let fx = tempfile::tempdir().expect("fixtures");
    // Named like an image, declared as one, but the bytes are HTML.
    let fake = write_file(fx.path(), "photo.png", b"<html><script>alert(1)</script></html>");
    let args = form(&[("gallery", &format!("@{fake};type=image/png"))]);
    let (status, text) = curl(&s, "POST", "/api/collections/docs/records", None, &args);
    assert_eq!(status, 400, "{text}");
    let body: Value = serde_json::from_str(&text).expect("problem json");
    assert_eq!(body["data"]["gallery"]["code"], "validation_invalid_mime_type", "{text}");
    assert!(tmp_entries(&s.dir).is_empty());
    let r = s.call("GET", "/api/collections/docs/records", None, None).await;
    assert_eq!(r.body["totalItems"], 0);
}

#[tokio::test]
async fn oversize_bodies_answer_413_with_or_without_content_length_and_leave_no_temp_file() {
    let s = Server::start_with(StartOptions {
        env: vec![("BACKBONE_FILES_MAX_UPLOAD_BYTES".into(), "200000".into())],
        ..StartOptions::default()
    });
    let t = s.setup_superuser().await;
    with_docs(&s, &t, json!("")).await;
    let fx = tempfile::tempdir().expect("fixtures");
    // Over the field's maxSize (20000) but under the body cap.
    let big_doc = write_file(fx.path(), "big.txt", &vec![b'a'; 50_000]);
    // Over the whole-body cap.
    let huge = write_file(fx.path(), "huge.bin", &vec![7u8; 600_000]);
    for chunked in [false, true] {
        let mut extra = Vec::new();
        if chunked {
            extra = vec!["-H".to_string(), "Transfer-Encoding: chunked".to_string()];
        }
        let mut args = form(&[("doc", &format!("@{big_doc}"))]);
        args.extend(extra.clone());
        let (status, text) = curl(&s, "POST", "/api/collections/docs/records", None, &args);
        assert_eq!(status, 413, "field cap, chunked={chunked}: {text}");
        let body: Value = serde_json::from_str(&text).expect("problem json");
        assert_eq!(body["data"]["doc"]["code"], "validation_file_size_limit", "{text}");
        let mut args = form(&[("secret", &format!("@{huge}"))]);
        args.extend(extra);
        let (status, text) = curl(&s, "POST", "/api/collections/docs/records", None, &args);
        assert_eq!(status, 413, "body cap, chunked={chunked}: {text}");
    }
    assert!(tmp_entries(&s.dir).is_empty(), "temp files: {:?}", tmp_entries(&s.dir));
    let r = s.call("GET", "/api/collections/docs/records", None, None).await;
    assert_eq!(r.body["totalItems"], 0);
}

#[tokio::test]
async fn downloads_support_range_etag_and_last_modified() {
    let s = Server::start();
    let t = s.setup_superuser().await;
    with_docs(&s, &t, json!("")).await;
    let fx = tempfile::tempdir().expect("fixtures");
    let content: Vec<u8> = (0..1000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let txt = write_file(fx.path(), "abc.txt", &content);
    let (status, text) =
        curl(&s, "POST", "/api/collections/docs/records", None, &form(&[("doc", &format!("@{txt}"))]));
    assert_eq!(status, 200, "{text}");
    let rec: Value = serde_json::from_str(&text).expect("json");
    let path =
        format!("/api/files/docs/{}/{}", rec["id"].as_str().expect("id"), rec["doc"].as_str().expect("doc"));

    let (status, h, body) = get_bytes(&s, &path, &[("Range", "bytes=10-19")]).await;
    assert_eq!(status, 206);
    assert_eq!(body, &content[10..20]);
    assert_eq!(header(&h, "content-range"), "bytes 10-19/1000");
    let (status, _, body) = get_bytes(&s, &path, &[("Range", "bytes=-5")]).await;
    assert_eq!((status, body.as_slice()), (206, &content[995..]));
    let (status, h, _) = get_bytes(&s, &path, &[("Range", "bytes=5000-")]).await;
    assert_eq!(status, 416);
    assert_eq!(header(&h, "content-range"), "bytes */1000");

    let (_, h, _) = get_bytes(&s, &path, &[]).await;
    let etag = header(&h, "etag").to_string();
    let modified = header(&h, "last-modified").to_string();
    assert!(etag.starts_with('"') && !modified.is_empty(), "{h:?}");
    let (status, _, body) = get_bytes(&s, &path, &[("If-None-Match", &etag)]).await;
    assert_eq!((status, body.len()), (304, 0));
    let (status, _, _) = get_bytes(&s, &path, &[("If-Modified-Since", &modified)]).await;
    assert_eq!(status, 304);
    let (status, _, _) = get_bytes(&s, &path, &[("If-None-Match", "\"other\"")]).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn svg_and_html_are_never_served_inline() {
    let s = Server::start();
    let t = s.setup_superuser().await;
    with_docs(&s, &t, json!("")).await;
    let fx = tempfile::tempdir().expect("fixtures");
    for (name, bytes, expected) in [
        (
            "pic.png",
            &b"<svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(1)</script></svg>"[..],
            "image/svg+xml",
        ),
        ("page.txt", &b"<!DOCTYPE html><html><script>alert(1)</script></html>"[..], "text/html"),
    ] {
        let f = write_file(fx.path(), name, bytes);
        let (status, text) = curl(
            &s,
            "POST",
            "/api/collections/docs/records",
            None,
            &form(&[("doc", &format!("@{f};type=image/png"))]),
        );
        assert_eq!(status, 200, "{text}");
        let rec: Value = serde_json::from_str(&text).expect("json");
        let path = format!(
            "/api/files/docs/{}/{}",
            rec["id"].as_str().expect("id"),
            rec["doc"].as_str().expect("doc")
        );
        let (status, h, _) = get_bytes(&s, &path, &[]).await;
        assert_eq!(status, 200);
        assert_eq!(header(&h, "content-type"), expected);
        assert!(header(&h, "content-disposition").starts_with("attachment"), "{name}: {h:?}");
        assert_eq!(header(&h, "x-content-type-options"), "nosniff");
    }
}

#[tokio::test]
async fn view_rule_hides_files_and_protected_files_need_a_file_token() {
    let s = Server::start();
    let t = s.setup_superuser().await;
    with_docs(&s, &t, Value::Null).await;
    let fx = tempfile::tempdir().expect("fixtures");
    let txt = write_file(fx.path(), "s.txt", b"secret bytes");
    let args = form(&[("doc", &format!("@{txt}")), ("secret", &format!("@{txt}"))]);
    let (status, text) = curl(&s, "POST", "/api/collections/docs/records", Some(&t), &args);
    assert_eq!(status, 200, "{text}");
    let rec: Value = serde_json::from_str(&text).expect("json");
    let id = rec["id"].as_str().expect("id");
    let doc = format!("/api/files/docs/{id}/{}", rec["doc"].as_str().expect("doc"));
    let secret = format!("/api/files/docs/{id}/{}", rec["secret"].as_str().expect("secret"));

    // viewRule null: only superusers see the record, so only they get its files.
    assert_eq!(get_bytes(&s, &doc, &[]).await.0, 404);
    assert_eq!(get_bytes(&s, &doc, &[("Authorization", &t)]).await.0, 200);
    // A protected file needs the file token, not the Authorization header.
    assert_eq!(get_bytes(&s, &secret, &[("Authorization", &t)]).await.0, 404);
    assert_eq!(
        get_bytes(&s, &format!("{secret}?token={t}"), &[]).await.0,
        404,
        "an auth token is not a file token"
    );
    let r = s.call("POST", "/api/files/token", None, None).await;
    r.assert_problem(401);
    let r = s.call("POST", "/api/files/token", Some(&t), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let file_token = r.body["token"].as_str().expect("token").to_string();
    let (status, _, body) = get_bytes(&s, &format!("{secret}?token={file_token}"), &[]).await;
    assert_eq!((status, body.as_slice()), (200, &b"secret bytes"[..]));
}

/// Every thumb mode on every input format, with the output's dimensions checked.
#[tokio::test]
async fn thumbs_in_every_mode_for_jpeg_png_gif_and_webp() {
    let s = Server::start();
    let t = s.setup_superuser().await;
    let coll = with_docs(&s, &t, json!("")).await;
    let fx = tempfile::tempdir().expect("fixtures");
    let expected = [(60, 60), (60, 30), (60, 30), (60, 40), (75, 50), (150, 100)];
    for (format, ext) in [
        (ImageFormat::Jpeg, "jpg"),
        (ImageFormat::Png, "png"),
        (ImageFormat::Gif, "gif"),
        (ImageFormat::WebP, "webp"),
    ] {
        let f = write_file(fx.path(), &format!("in.{ext}"), &encoded(&picture(300, 200), format));
        let (status, text) =
            curl(&s, "POST", "/api/collections/docs/records", None, &form(&[("gallery", &format!("@{f}"))]));
        assert_eq!(status, 200, "{ext}: {text}");
        let rec: Value = serde_json::from_str(&text).expect("json");
        let id = rec["id"].as_str().expect("id");
        let name = rec["gallery"][0].as_str().expect("name");
        // The upload's job produces every configured size in the background.
        let thumbs_dir = s
            .dir
            .join("files")
            .join(coll["id"].as_str().expect("cid"))
            .join(id)
            .join(format!("thumbs_{name}"));
        wait_until(&format!("the {ext} variants exist"), || {
            ALL_THUMBS.iter().all(|size| thumbs_dir.join(format!("{size}.webp")).exists())
        })
        .await;
        for (size, (w, h)) in ALL_THUMBS.iter().zip(expected) {
            let (status, headers, body) =
                get_bytes(&s, &format!("/api/files/docs/{id}/{name}?thumb={size}"), &[]).await;
            assert_eq!(status, 200);
            assert_eq!(header(&headers, "content-type"), "image/webp", "{ext} {size}");
            let img = image::load_from_memory_with_format(&body, ImageFormat::WebP).expect("webp decodes");
            assert_eq!((img.width(), img.height()), (w, h), "{ext} {size}");
        }
        // A size the field does not list answers the original.
        let (status, headers, body) =
            get_bytes(&s, &format!("/api/files/docs/{id}/{name}?thumb=33x33"), &[]).await;
        assert_eq!(status, 200);
        assert!(header(&headers, "content-disposition").contains(name), "{headers:?}");
        assert_eq!(body, std::fs::read(&f).expect("fixture"));
    }
}

#[tokio::test]
async fn an_allowed_size_not_yet_produced_is_generated_on_request_once_for_concurrent_callers() {
    let s = Server::start();
    let t = s.setup_superuser().await;
    with_docs(&s, &t, json!("")).await;
    let fx = tempfile::tempdir().expect("fixtures");
    let f = write_file(fx.path(), "p.png", &encoded(&picture(400, 300), ImageFormat::Png));
    let (status, text) =
        curl(&s, "POST", "/api/collections/docs/records", None, &form(&[("gallery", &format!("@{f}"))]));
    assert_eq!(status, 200, "{text}");
    let rec: Value = serde_json::from_str(&text).expect("json");
    // 100x100 is always allowed (PocketBase's admin thumb) and no job produces it.
    let path = format!(
        "/api/files/docs/{}/{}?thumb=100x100",
        rec["id"].as_str().expect("id"),
        rec["gallery"][0].as_str().expect("name")
    );
    let requests = (0..8).map(|_| get_bytes(&s, &path, &[]));
    let replies = futures_util::future::join_all(requests).await;
    let first = &replies[0].2;
    for (status, headers, body) in &replies {
        assert_eq!(*status, 200);
        assert_eq!(header(headers, "content-type"), "image/webp");
        assert_eq!(body, first, "every caller gets the same cached variant");
    }
    let img = image::load_from_memory(first).expect("decodes");
    assert_eq!((img.width(), img.height()), (100, 100));
}

/// A JPEG with an EXIF APP1 segment saying "rotate 90° clockwise" (orientation 6).
fn jpeg_with_orientation(img: &DynamicImage, orientation: u16) -> Vec<u8> {
    let plain = encoded(img, ImageFormat::Jpeg);
    let mut tiff = Vec::new();
    tiff.extend_from_slice(b"II*\0");
    tiff.extend_from_slice(&8u32.to_le_bytes());
    tiff.extend_from_slice(&1u16.to_le_bytes()); // one entry
    tiff.extend_from_slice(&0x0112u16.to_le_bytes()); // Orientation
    tiff.extend_from_slice(&3u16.to_le_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_le_bytes());
    tiff.extend_from_slice(&orientation.to_le_bytes());
    tiff.extend_from_slice(&[0, 0]);
    tiff.extend_from_slice(&0u32.to_le_bytes()); // no next IFD
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(&tiff);
    let mut out = vec![0xFF, 0xD8, 0xFF, 0xE1];
    out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&plain[2..]);
    out
}

#[tokio::test]
async fn exif_orientation_is_applied_to_variants() {
    let s = Server::start();
    let t = s.setup_superuser().await;
    with_docs(&s, &t, json!("")).await;
    let fx = tempfile::tempdir().expect("fixtures");
    // Stored 200 wide and 100 high; displayed (rotated) 100 wide and 200 high.
    let f = write_file(fx.path(), "rot.jpg", &jpeg_with_orientation(&picture(200, 100), 6));
    let (status, text) =
        curl(&s, "POST", "/api/collections/docs/records", None, &form(&[("gallery", &format!("@{f}"))]));
    assert_eq!(status, 200, "{text}");
    let rec: Value = serde_json::from_str(&text).expect("json");
    let path = format!(
        "/api/files/docs/{}/{}?thumb=150x0",
        rec["id"].as_str().expect("id"),
        rec["gallery"][0].as_str().expect("name")
    );
    let (status, _, body) = get_bytes(&s, &path, &[]).await;
    assert_eq!(status, 200);
    let img = image::load_from_memory(&body).expect("decodes");
    assert_eq!((img.width(), img.height()), (150, 300), "rotated before resizing");
}

/// A PNG header declaring a huge image, followed by a little compressed data.
fn bomb_png(side: u32) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let mut crc_input = kind.to_vec();
        crc_input.extend_from_slice(data);
        out.extend_from_slice(&crc32(&crc_input).to_be_bytes());
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&side.to_be_bytes());
    ihdr.extend_from_slice(&side.to_be_bytes());
    ihdr.extend_from_slice(&[8, 6, 0, 0, 0]); // 8-bit RGBA
    chunk(&mut out, b"IHDR", &ihdr);
    // zlib stream of stored zero bytes (valid, tiny): the decoder would need side² × 4 bytes.
    chunk(&mut out, b"IDAT", &[0x78, 0x9c, 0x63, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01]);
    chunk(&mut out, b"IEND", &[]);
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

#[tokio::test]
async fn decompression_bombs_and_corrupt_images_fail_their_job_and_the_original_is_served() {
    let s = Server::start();
    let t = s.setup_superuser().await;
    with_docs(&s, &t, json!("")).await;
    let fx = tempfile::tempdir().expect("fixtures");
    let bomb = bomb_png(15_000); // within the side limit, ~900 MB to decode: over max_decode_mb
    let mut corrupt = encoded(&picture(50, 50), ImageFormat::Png);
    corrupt.truncate(60);
    corrupt.extend_from_slice(&[0xAB; 64]);
    for (name, bytes) in [("bomb.png", bomb), ("corrupt.png", corrupt)] {
        let f = write_file(fx.path(), name, &bytes);
        let (status, text) =
            curl(&s, "POST", "/api/collections/docs/records", None, &form(&[("gallery", &format!("@{f}"))]));
        assert_eq!(status, 200, "{name}: {text}");
        let rec: Value = serde_json::from_str(&text).expect("json");
        let path = format!(
            "/api/files/docs/{}/{}?thumb=60x60",
            rec["id"].as_str().expect("id"),
            rec["gallery"][0].as_str().expect("name")
        );
        let (status, h, body) = get_bytes(&s, &path, &[]).await;
        assert_eq!(status, 200, "{name}");
        assert_eq!(header(&h, "content-type"), "image/png", "{name}: the original");
        assert_eq!(body, bytes, "{name}");
    }
    // Both variant jobs died at once (no retries), with the decoder's reason.
    let mut dead = Vec::new();
    let deadline = std::time::Instant::now() + crate::common::PATIENCE;
    while std::time::Instant::now() < deadline {
        let r = s.call("GET", "/api/jobs?kind=files.thumbs&state=dead", Some(&t), None).await;
        dead = r.body["items"].as_array().cloned().unwrap_or_default();
        if dead.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert!(dead.iter().all(|j| j["attempt"] == 1), "{dead:?}");
    let r = s.call("GET", "/api/health", None, None).await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn storage_usage_is_visible_to_superusers_only() {
    let s = Server::start();
    let t = s.setup_superuser().await;
    with_docs(&s, &t, json!("")).await;
    let fx = tempfile::tempdir().expect("fixtures");
    let a = write_file(fx.path(), "a.txt", &[b'x'; 1000]);
    let b = write_file(fx.path(), "b.txt", &[b'y'; 300]);
    let (status, text) = curl(
        &s,
        "POST",
        "/api/collections/docs/records",
        None,
        &form(&[("doc", &format!("@{a}")), ("secret", &format!("@{b}"))]),
    );
    assert_eq!(status, 200, "{text}");
    let rec: Value = serde_json::from_str(&text).expect("json");
    s.call("GET", "/api/files/usage", None, None).await.assert_problem(403);
    let r = s.call("GET", "/api/files/usage?collection=docs", Some(&t), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["totalBytes"], 1300);
    assert_eq!(r.body["totalFiles"], 2);
    assert_eq!(r.body["collections"][0]["collectionName"], "docs");
    assert_eq!(r.body["records"][0]["recordId"], rec["id"]);
    assert_eq!(r.body["records"][0]["bytes"], 1300);
}

#[tokio::test]
async fn startup_sweeps_temp_files_and_unreferenced_blobs() {
    let dir = tempfile::tempdir().expect("dir");
    let mut s = Server::start_in(dir.path(), StartOptions::default());
    let t = s.setup_superuser().await;
    let coll = with_docs(&s, &t, json!("")).await;
    let fx = tempfile::tempdir().expect("fixtures");
    let a = write_file(fx.path(), "keep.txt", b"keep");
    let (status, text) =
        curl(&s, "POST", "/api/collections/docs/records", None, &form(&[("doc", &format!("@{a}"))]));
    assert_eq!(status, 200, "{text}");
    let rec: Value = serde_json::from_str(&text).expect("json");
    s.terminate();
    let cid = coll["id"].as_str().expect("cid");
    let record_dir = dir.path().join("files").join(cid).join(rec["id"].as_str().expect("id"));
    let kept = record_dir.join(rec["doc"].as_str().expect("doc"));
    std::fs::write(dir.path().join("files/.tmp/upload-leftover"), b"half").expect("temp");
    std::fs::write(record_dir.join("orphan_0123456789.txt"), b"orphan").expect("orphan");
    let ghost = dir.path().join("files").join(cid).join("ghostghostghost");
    std::fs::create_dir_all(&ghost).expect("ghost dir");
    std::fs::write(ghost.join("x_0123456789.txt"), b"ghost").expect("ghost");
    let s = Server::start_in(dir.path(), StartOptions::default());
    assert!(tmp_entries(&s.dir).is_empty());
    assert!(kept.exists(), "referenced blobs stay");
    assert!(!record_dir.join("orphan_0123456789.txt").exists());
    assert!(!ghost.exists());
}

#[tokio::test]
async fn deleting_a_collection_removes_its_blobs() {
    let s = Server::start();
    let t = s.setup_superuser().await;
    let coll = with_docs(&s, &t, json!("")).await;
    let fx = tempfile::tempdir().expect("fixtures");
    let a = write_file(fx.path(), "a.txt", b"gone soon");
    let (status, text) =
        curl(&s, "POST", "/api/collections/docs/records", None, &form(&[("doc", &format!("@{a}"))]));
    assert_eq!(status, 200, "{text}");
    let dir = s.dir.join("files").join(coll["id"].as_str().expect("cid"));
    assert!(dir.exists());
    let r = s.call("DELETE", "/api/collections/docs", Some(&t), None).await;
    assert_eq!(r.status, 204, "{}", r.text);
    wait_until("the collection's files are swept", || !dir.exists()).await;
    let r = s.call("GET", "/api/files/usage", Some(&t), None).await;
    assert_eq!(r.body["totalFiles"], 0, "{}", r.text);
}

#[tokio::test]
async fn a_daily_sweep_schedule_exists_once() {
    let dir = tempfile::tempdir().expect("dir");
    let mut s = Server::start_in(dir.path(), StartOptions::default());
    let t = s.setup_superuser().await;
    let r = s.call("GET", "/api/crons", Some(&t), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let sweeps = |body: &Value| {
        body.as_array().map(|a| a.iter().filter(|c| c["kind"] == "files.sweep").count()).unwrap_or(0)
    };
    assert_eq!(sweeps(&r.body), 1, "{}", r.text);
    s.terminate();
    let s = Server::start_in(dir.path(), StartOptions::default());
    let t = s.login().await;
    let r = s.call("GET", "/api/crons", Some(&t), None).await;
    assert_eq!(sweeps(&r.body), 1, "not recreated on restart: {}", r.text);
}

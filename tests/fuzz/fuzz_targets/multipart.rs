//! The multipart upload path: any body, cut into any chunks, must parse into a form or be
//! refused with a 4xx-class error — never a panic, never an I/O or internal error — and
//! no temporary file may outlive the request (removed on error, removed when an unused
//! form is dropped). A parsed form holds only what the caps allow: every upload within
//! its field's `maxSize` and of a type the field accepts, sized as its temp file.
#![no_main]

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};

use backbone::files::upload::{self, UploadLimits};
use backbone::files::FilesError;
use backbone::records::collection::{self, Collection, CollectionInput};
use libfuzzer_sys::fuzz_target;
use serde_json::json;

const BOUNDARY: &str = "fuzzBoundary7MA4YWxk";
const MAX_BODY: u64 = 16 * 1024;

struct Fixture {
    runtime: tokio::runtime::Runtime,
    collection: Collection,
    tmp: tempfile::TempDir,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let input = CollectionInput::parse(json!({
            "name": "docs",
            "fields": [
                {"name": "title", "type": "text", "max": 200},
                {"name": "meta", "type": "json", "maxSize": 2000},
                {"name": "tags", "type": "select", "values": ["a", "b"], "maxSelect": 2},
                {"name": "avatar", "type": "file", "maxSelect": 1, "maxSize": 2048,
                 "mimeTypes": ["image/png", "image/jpeg", "image/gif"]},
                {"name": "attachments", "type": "file", "maxSelect": 3, "maxSize": 4096}
            ]
        }))
        .expect("fixed collection input parses");
        let collection = collection::build(input, None, "pbc_fuzzmultipart".into(), "2026-01-01 00:00:00.000Z", &|_| None)
            .expect("fixed collection builds");
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        Fixture { runtime, collection, tmp: tempfile::tempdir().expect("temp dir") }
    })
}

fn leftovers(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("temp dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, body)) = data.split_first() else { return };
    let f = fixture();
    // Chunks of 1..=64 bytes (from the first input byte), as a network would deliver them.
    let step = usize::from(cut % 64) + 1;
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = body.chunks(step).map(|c| Ok(c.to_vec())).collect();
    let too_large = Arc::new(AtomicBool::new(false));
    let stream = upload::limited(futures_util::stream::iter(chunks), MAX_BODY, too_large.clone());
    let limits = UploadLimits { max_body_bytes: MAX_BODY, max_text_bytes: 4096 };
    let result = f.runtime.block_on(upload::parse_form(
        stream,
        BOUNDARY.to_string(),
        &f.collection,
        f.tmp.path(),
        limits,
        too_large,
    ));
    match result {
        Ok(form) => {
            assert!(body.len() as u64 <= MAX_BODY, "a body over the cap was accepted");
            for up in &form.uploads {
                let (max, images_only) = match up.field.as_str() {
                    "avatar" => (2048, true),
                    "attachments" => (4096, false),
                    other => panic!("upload for a non-file field {other}"),
                };
                assert!(up.size <= max, "{} bytes in {}", up.size, up.field);
                if images_only {
                    assert!(up.content_type.starts_with("image/"), "{} accepted {}", up.field, up.content_type);
                }
                let on_disk = std::fs::metadata(&up.temp_path).expect("the upload's temp file exists").len();
                assert_eq!(on_disk, up.size);
            }
            drop(form);
        }
        Err(FilesError::TooLarge { .. } | FilesError::Validation { .. } | FilesError::BadRequest(_)) => {}
        Err(other) => panic!("not a client error: {other:?}"),
    }
    let left = leftovers(f.tmp.path());
    assert!(left.is_empty(), "temporary files outlived the request: {left:?}");
});

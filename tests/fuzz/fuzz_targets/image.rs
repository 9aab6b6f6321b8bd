//! The image decoder entry point of the variant jobs: any bytes must decode within the
//! limits or be refused with an error — never a panic, never an allocation beyond the
//! limits — and every thumb mode must render a decoded image to a non-empty WebP.
#![no_main]

use backbone::files::sniff;
use backbone::files::thumbs::{self, DecodeLimits, ThumbSize};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = sniff::sniff(data);
    let limits = DecodeLimits { max_side: 1024, max_alloc_bytes: 16 << 20 };
    let Ok(img) = thumbs::decode_bytes(data, limits) else { return };
    assert!(img.width() <= 1024 && img.height() <= 1024, "the side limit holds after orientation");
    for size in ["16x16", "16x8t", "8x16b", "16x16f", "0x8", "8x0"] {
        let size = ThumbSize::parse(size).expect("a valid size");
        let out = thumbs::render(&img, size);
        assert!(out.width() >= 1 && out.height() >= 1);
        if size.width > 0 && size.height > 0 && size.mode != thumbs::Mode::Fit {
            assert_eq!((out.width(), out.height()), (size.width, size.height));
        }
    }
    let small = thumbs::render(&img, ThumbSize::parse("8x8").expect("a valid size"));
    let webp = thumbs::encode_webp(&small).expect("a rendered variant encodes");
    assert!(!webp.is_empty());
});

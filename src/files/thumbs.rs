//! Image variants: PocketBase's thumb sizes, decoding with limits (no decompression bombs),
//! EXIF orientation, resizing, and WebP encoding. Everything here is blocking CPU work: call
//! it from the blocking pool or a job, never on the async executor.

use std::io::{BufReader, Cursor, Read, Seek};

use image::imageops::FilterType;
use image::{DynamicImage, ImageDecoder, ImageReader};

/// How a `WxH` thumb fills its box.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `WxH`: cover the box, crop the overflow around the centre.
    Center,
    /// `WxHt`: cover the box, keep the top.
    Top,
    /// `WxHb`: cover the box, keep the bottom.
    Bottom,
    /// `WxHf`: fit inside the box, no cropping (never enlarged).
    Fit,
}

/// A parsed thumb size. A zero side (`0xH`, `Wx0`) keeps the aspect ratio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThumbSize {
    pub width: u32,
    pub height: u32,
    pub mode: Mode,
}

impl ThumbSize {
    /// Parses `WxH`, `WxHt`, `WxHb`, `WxHf`, `0xH`, `Wx0` (sides up to 5 digits, not both 0).
    pub fn parse(size: &str) -> Option<ThumbSize> {
        if !crate::records::field::is_valid_thumb_size(size) {
            return None;
        }
        let (body, mode) = match size.as_bytes().last() {
            Some(b't') => (&size[..size.len() - 1], Mode::Top),
            Some(b'b') => (&size[..size.len() - 1], Mode::Bottom),
            Some(b'f') => (&size[..size.len() - 1], Mode::Fit),
            _ => (size, Mode::Center),
        };
        let (w, h) = body.split_once('x')?;
        Some(ThumbSize { width: w.parse().ok()?, height: h.parse().ok()?, mode })
    }
}

/// Decoder limits: the largest side and the most memory a decode may allocate.
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    pub max_side: u32,
    pub max_alloc_bytes: u64,
}

/// Why a variant could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ThumbError {
    #[error("cannot read the image: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot decode the image: {0}")]
    Decode(String),
    #[error("the image exceeds the decode limits: {0}")]
    Limits(String),
    #[error("cannot encode the variant: {0}")]
    Encode(String),
}

fn image_error(err: image::ImageError) -> ThumbError {
    match err {
        image::ImageError::Limits(e) => ThumbError::Limits(e.to_string()),
        image::ImageError::IoError(e) => ThumbError::Io(e),
        other => ThumbError::Decode(other.to_string()),
    }
}

/// Decodes an image within `limits`, with its EXIF orientation applied.
pub fn decode<R: Read + Seek>(reader: R, limits: DecodeLimits) -> Result<DynamicImage, ThumbError> {
    let mut reader = ImageReader::new(BufReader::new(reader)).with_guessed_format()?;
    let mut l = image::Limits::default();
    l.max_image_width = Some(limits.max_side);
    l.max_image_height = Some(limits.max_side);
    l.max_alloc = Some(limits.max_alloc_bytes);
    reader.limits(l);
    let mut decoder = reader.into_decoder().map_err(image_error)?;
    let (w, h) = decoder.dimensions();
    // A zero side (a GIF may declare 1x0) has no variant to make: refused like a corrupt image.
    if w == 0 || h == 0 {
        return Err(ThumbError::Decode(format!("the image is {w}x{h} pixels")));
    }
    // Checked before allocating: decoders differ in how strictly they apply `max_alloc`.
    if u64::from(w) * u64::from(h) * 4 > limits.max_alloc_bytes {
        return Err(ThumbError::Limits(format!("{w}x{h} pixels need more than the allowed memory")));
    }
    let orientation = decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(image_error)?;
    img.apply_orientation(orientation);
    Ok(img)
}

/// [`decode`] from bytes in memory (also the fuzzing entry point).
pub fn decode_bytes(bytes: &[u8], limits: DecodeLimits) -> Result<DynamicImage, ThumbError> {
    decode(Cursor::new(bytes), limits)
}

fn scaled(side: u32, num: u32, den: u32) -> u32 {
    ((f64::from(side) * f64::from(num) / f64::from(den.max(1))).round() as u32).max(1)
}

fn resize(img: &DynamicImage, w: u32, h: u32) -> DynamicImage {
    if w == img.width() && h == img.height() {
        return img.clone();
    }
    if w < img.width() && h < img.height() {
        // Shrinking: the fast area-averaging path (also the quality choice for downscaling).
        img.thumbnail_exact(w, h)
    } else {
        img.resize_exact(w, h, FilterType::Triangle)
    }
}

/// Makes the variant `size` of `img` (PocketBase's semantics for each mode).
pub fn render(img: &DynamicImage, size: ThumbSize) -> DynamicImage {
    let (iw, ih) = (img.width().max(1), img.height().max(1));
    let ThumbSize { width: w, height: h, mode } = size;
    if w == 0 {
        return resize(img, scaled(iw, h, ih), h.max(1));
    }
    if h == 0 {
        return resize(img, w, scaled(ih, w, iw));
    }
    match mode {
        Mode::Fit => {
            if iw <= w && ih <= h {
                return img.clone();
            }
            let (rw, rh) = if u64::from(iw) * u64::from(h) >= u64::from(ih) * u64::from(w) {
                (w, scaled(ih, w, iw))
            } else {
                (scaled(iw, h, ih), h)
            };
            resize(img, rw.min(w), rh.min(h))
        }
        Mode::Center | Mode::Top | Mode::Bottom => {
            // Cover the box, then cut the overflow.
            let (rw, rh) = if u64::from(iw) * u64::from(h) >= u64::from(ih) * u64::from(w) {
                (scaled(iw, h, ih).max(w), h)
            } else {
                (w, scaled(ih, w, iw).max(h))
            };
            let covered = resize(img, rw, rh);
            let x = (rw - w) / 2;
            let y = match mode {
                Mode::Top => 0,
                Mode::Bottom => rh - h,
                _ => (rh - h) / 2,
            };
            covered.crop_imm(x, y, w, h)
        }
    }
}

/// Quality of the lossy WebP variants (libwebp's scale, 0–100).
pub const WEBP_QUALITY: f32 = 80.0;

/// Encodes as lossy WebP (libwebp, built from source by `libwebp-sys` with the C compiler;
/// `image`'s own pure-Rust encoder is lossless only, 5–10× larger for photos).
pub fn encode_webp(img: &DynamicImage) -> Result<Vec<u8>, ThumbError> {
    let (w, h) = (img.width(), img.height());
    let encoded = if img.color().has_alpha() {
        let rgba = img.to_rgba8();
        webp::Encoder::from_rgba(rgba.as_raw(), w, h).encode_simple(false, WEBP_QUALITY).map(|m| m.to_vec())
    } else {
        let rgb = img.to_rgb8();
        webp::Encoder::from_rgb(rgb.as_raw(), w, h).encode_simple(false, WEBP_QUALITY).map(|m| m.to_vec())
    };
    encoded.map_err(|e| ThumbError::Encode(format!("{e:?}")))
}

/// Decode, render every size, encode: the whole variant pipeline for bytes in memory.
pub fn variants(bytes: &[u8], sizes: &[ThumbSize], limits: DecodeLimits) -> Result<Vec<Vec<u8>>, ThumbError> {
    let img = decode_bytes(bytes, limits)?;
    sizes.iter().map(|s| encode_webp(&render(&img, *s))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(w: u32, h: u32) -> DynamicImage {
        DynamicImage::ImageRgb8(image::RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, 7])))
    }

    fn dims(size: &str, w: u32, h: u32) -> (u32, u32) {
        let out = render(&image(w, h), ThumbSize::parse(size).expect("valid size"));
        (out.width(), out.height())
    }

    #[test]
    fn every_mode_has_pocketbase_dimensions() {
        assert_eq!(dims("100x100", 300, 200), (100, 100));
        assert_eq!(dims("100x50t", 300, 200), (100, 50));
        assert_eq!(dims("100x50b", 300, 200), (100, 50));
        assert_eq!(dims("100x100f", 300, 200), (100, 67));
        assert_eq!(dims("400x400f", 300, 200), (300, 200), "fit never enlarges");
        assert_eq!(dims("0x50", 300, 200), (75, 50));
        assert_eq!(dims("150x0", 300, 200), (150, 100));
        assert_eq!(dims("600x0", 300, 200), (600, 400), "one-sided sizes may enlarge");
    }

    #[test]
    fn top_and_bottom_keep_their_edge() {
        let mut img = image::RgbImage::new(10, 40);
        for x in 0..10 {
            img.put_pixel(x, 0, image::Rgb([255, 0, 0]));
            img.put_pixel(x, 39, image::Rgb([0, 0, 255]));
        }
        let img = DynamicImage::ImageRgb8(img);
        let top = render(&img, ThumbSize::parse("10x10t").expect("size")).to_rgb8();
        let bottom = render(&img, ThumbSize::parse("10x10b").expect("size")).to_rgb8();
        assert_eq!(top.get_pixel(5, 0).0, [255, 0, 0]);
        assert_eq!(bottom.get_pixel(5, 9).0, [0, 0, 255]);
    }

    /// A PNG that declares `side`×`side` RGBA pixels but carries almost no data.
    fn bomb(side: u32) -> Vec<u8> {
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
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        for (kind, data) in [
            (
                &b"IHDR"[..],
                [side.to_be_bytes(), side.to_be_bytes()]
                    .concat()
                    .into_iter()
                    .chain([8, 6, 0, 0, 0])
                    .collect::<Vec<u8>>(),
            ),
            (&b"IDAT"[..], vec![0x78, 0x9c, 0x63, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01]),
            (&b"IEND"[..], vec![]),
        ] {
            out.extend_from_slice(&(data.len() as u32).to_be_bytes());
            let body = [kind, &data].concat();
            out.extend_from_slice(&body);
            out.extend_from_slice(&crc32(&body).to_be_bytes());
        }
        out
    }

    #[test]
    fn an_image_with_a_zero_side_is_refused() {
        // Found by the `image` fuzz target: a GIF declaring 1x0 pixels decoded to an empty
        // image, and every variant of it was empty.
        let gif = include_bytes!("../../tests/fuzz/corpus/image/gif-zero-height");
        let limits = DecodeLimits { max_side: 1024, max_alloc_bytes: 16 << 20 };
        assert!(matches!(decode_bytes(gif, limits), Err(ThumbError::Decode(_))));
    }

    #[test]
    fn decompression_bombs_are_refused_before_decoding() {
        let limits = DecodeLimits { max_side: 16_384, max_alloc_bytes: 256 << 20 };
        // Over the side limit.
        assert!(matches!(decode_bytes(&bomb(100_000), limits), Err(ThumbError::Limits(_))));
        // Within the side limit, but 10000² × 4 bytes is over the allocation budget.
        assert!(matches!(decode_bytes(&bomb(10_000), limits), Err(ThumbError::Limits(_))));
        // A small truncated image is a decode error, not a panic.
        assert!(matches!(decode_bytes(&bomb(64), limits), Err(ThumbError::Decode(_) | ThumbError::Io(_))));
    }

    #[test]
    fn invalid_sizes_are_refused() {
        for bad in ["0x0", "x10", "10x", "10x10q", "-1x5", "abc", "100000x1"] {
            assert!(ThumbSize::parse(bad).is_none(), "{bad}");
        }
    }
}

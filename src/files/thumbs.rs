//! Image variants: PocketBase's thumb sizes, decoding with limits (no decompression bombs),
//! EXIF orientation, resizing, and WebP encoding. Everything here is blocking CPU work: call
//! it from the blocking pool or a job, never on the async executor.

use std::io::{BufReader, Cursor, Read, Seek};

use image::imageops::FilterType;
use image::metadata::Orientation;
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

/// How much memory image work may hold, derived from the configuration by [`DecodeBudget::derive`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeBudget {
    /// Bytes all decodes running at once may hold together (a shared byte semaphore).
    pub total_bytes: u64,
    /// Bytes one decode (and the rendering of its variants) may hold; never above
    /// `total_bytes`, so a decode that fits alone always gets its turn.
    pub per_decode_bytes: u64,
}

impl DecodeBudget {
    /// The share of `[limits] max_rss_mb` image work may hold at once: a quarter. The
    /// memory cap sheds requests from two thirds of it on, and the rest of the process
    /// (caches, requests in flight, the search writer) needs the remainder.
    pub const RSS_SHARE_DIVISOR: u64 = 4;

    /// From the memory cap (`max_rss_mb`, 0 for none), the per-decode setting
    /// (`max_decode_mb`) and the number of decode workers. With a cap, everything decoding
    /// at once holds at most a quarter of it, and one decode at most that (or
    /// `max_decode_mb`, if smaller). Without a cap, each decode may hold `max_decode_mb`
    /// and all workers together that many times (the settings as written).
    pub fn derive(max_rss_mb: u64, max_decode_mb: u64, workers: usize) -> DecodeBudget {
        let per_decode = max_decode_mb.max(1).saturating_mul(1 << 20);
        if max_rss_mb == 0 {
            let workers = u64::try_from(workers.max(1)).unwrap_or(u64::MAX);
            return DecodeBudget {
                total_bytes: per_decode.saturating_mul(workers),
                per_decode_bytes: per_decode,
            };
        }
        let total = (max_rss_mb.saturating_mul(1 << 20) / Self::RSS_SHARE_DIVISOR).max(1 << 20);
        DecodeBudget { total_bytes: total, per_decode_bytes: per_decode.min(total) }
    }
}

/// What an image's header says, read before any pixel is decoded.
#[derive(Debug, Clone, Copy)]
pub struct Probe {
    pub width: u32,
    pub height: u32,
    /// Bytes per pixel of the decoded image (3 for RGB8, 4 for RGBA8, 8 for RGBA16...).
    pub bytes_per_pixel: u64,
    /// Applying the EXIF orientation makes a rotated copy (90°/270°; flips and 180° work in place).
    pub rotates: bool,
}

impl Probe {
    /// Bytes the decoded image holds, with its rotated copy if the orientation makes one.
    pub fn decoded_bytes(&self) -> u64 {
        let pixels = u64::from(self.width) * u64::from(self.height);
        pixels.saturating_mul(self.bytes_per_pixel).saturating_mul(if self.rotates { 2 } else { 1 })
    }

    /// Bytes the whole variant pipeline holds at its peak, estimated from above: the
    /// decoded image plus, for the largest of `sizes` (they are rendered one after the
    /// other), the resized image, the cropped variant and the RGB(A) copy the encoder reads.
    pub fn produce_bytes(&self, sizes: &[ThumbSize]) -> u64 {
        let (iw, ih) = if self.rotates { (self.height, self.width) } else { (self.width, self.height) };
        let per_pixel = self.bytes_per_pixel.max(4);
        let variant = sizes
            .iter()
            .map(|size| {
                let (rw, rh) = resized_dims(iw.max(1), ih.max(1), *size);
                (u64::from(rw) * u64::from(rh)).saturating_mul(per_pixel).saturating_mul(3)
            })
            .max()
            .unwrap_or(0);
        self.decoded_bytes().saturating_add(variant)
    }
}

/// The dimensions [`render`] resizes an `iw`×`ih` image to for `size` (before cropping).
fn resized_dims(iw: u32, ih: u32, size: ThumbSize) -> (u32, u32) {
    let ThumbSize { width: w, height: h, mode } = size;
    if w == 0 {
        return (scaled(iw, h, ih), h.max(1));
    }
    if h == 0 {
        return (w, scaled(ih, w, iw));
    }
    let wide = u64::from(iw) * u64::from(h) >= u64::from(ih) * u64::from(w);
    match mode {
        Mode::Fit if iw <= w && ih <= h => (iw, ih),
        Mode::Fit if wide => (w, scaled(ih, w, iw).min(h)),
        Mode::Fit => (scaled(iw, h, ih).min(w), h),
        _ if wide => (scaled(iw, h, ih).max(w), h),
        _ => (w, scaled(ih, w, iw).max(h)),
    }
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

fn decoder<'a, R: Read + Seek + 'a>(
    reader: R,
    limits: DecodeLimits,
) -> Result<impl ImageDecoder + 'a, ThumbError> {
    let mut reader = ImageReader::new(BufReader::new(reader)).with_guessed_format()?;
    let mut l = image::Limits::default();
    l.max_image_width = Some(limits.max_side);
    l.max_image_height = Some(limits.max_side);
    l.max_alloc = Some(limits.max_alloc_bytes);
    reader.limits(l);
    reader.into_decoder().map_err(image_error)
}

fn header(decoder: &mut impl ImageDecoder) -> Result<(Probe, Orientation), ThumbError> {
    let (w, h) = decoder.dimensions();
    // A zero side (a GIF may declare 1x0) has no variant to make: refused like a corrupt image.
    if w == 0 || h == 0 {
        return Err(ThumbError::Decode(format!("the image is {w}x{h} pixels")));
    }
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let rotates = matches!(
        orientation,
        Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH
    );
    let bytes_per_pixel = u64::from(decoder.color_type().bytes_per_pixel());
    Ok((Probe { width: w, height: h, bytes_per_pixel, rotates }, orientation))
}

/// Reads an image's header within `limits` (the side limit applies) without decoding it.
pub fn probe<R: Read + Seek>(reader: R, limits: DecodeLimits) -> Result<Probe, ThumbError> {
    let mut decoder = decoder(reader, limits)?;
    Ok(header(&mut decoder)?.0)
}

/// Decodes an image within `limits`, with its EXIF orientation applied.
pub fn decode<R: Read + Seek>(reader: R, limits: DecodeLimits) -> Result<DynamicImage, ThumbError> {
    let mut decoder = decoder(reader, limits)?;
    let (probe, orientation) = header(&mut decoder)?;
    // Checked before allocating: decoders differ in how strictly they apply `max_alloc`.
    let needed = probe.decoded_bytes();
    if needed > limits.max_alloc_bytes {
        return Err(over_budget(&probe, needed, limits.max_alloc_bytes));
    }
    let mut img = DynamicImage::from_decoder(decoder).map_err(image_error)?;
    img.apply_orientation(orientation);
    Ok(img)
}

/// The error for an image whose decode would need `needed` bytes, over `allowed`.
pub fn over_budget(probe: &Probe, needed: u64, allowed: u64) -> ThumbError {
    ThumbError::Limits(format!(
        "{}x{} pixels need {} MiB to decode, over the {} MiB allowed per image",
        probe.width,
        probe.height,
        needed.div_ceil(1 << 20),
        allowed >> 20
    ))
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
    fn the_decode_budget_is_a_quarter_of_the_memory_cap() {
        const MIB: u64 = 1 << 20;
        // The defaults: 1024 MiB cap, 512 MiB per decode, 2 workers. Before, 2 × 512 MiB
        // could be decoding at once, more than the whole cap.
        let d = DecodeBudget::derive(1024, 512, 2);
        assert_eq!(d, DecodeBudget { total_bytes: 256 * MIB, per_decode_bytes: 256 * MIB });
        // A small cap: everything scales down with it.
        assert_eq!(
            DecodeBudget::derive(256, 512, 2),
            DecodeBudget { total_bytes: 64 * MIB, per_decode_bytes: 64 * MIB }
        );
        // A large cap: the per-decode setting still bounds one decode.
        assert_eq!(
            DecodeBudget::derive(8192, 512, 2),
            DecodeBudget { total_bytes: 2048 * MIB, per_decode_bytes: 512 * MIB }
        );
        // No cap: the settings as written.
        assert_eq!(
            DecodeBudget::derive(0, 512, 2),
            DecodeBudget { total_bytes: 1024 * MIB, per_decode_bytes: 512 * MIB }
        );
        assert_eq!(DecodeBudget::derive(0, 0, 0), DecodeBudget { total_bytes: MIB, per_decode_bytes: MIB });
        // A tiny cap still leaves a MiB, and one decode never exceeds the total.
        for cap in [1, 3, 100, 1024, 4096, 1 << 20] {
            for workers in [1, 2, 8] {
                let d = DecodeBudget::derive(cap, 512, workers);
                assert!(d.per_decode_bytes <= d.total_bytes);
                assert!(d.total_bytes <= (cap * MIB / 4).max(MIB), "cap {cap}: {d:?}");
            }
        }
    }

    #[test]
    fn the_estimate_counts_pixels_copies_and_variants() {
        let rgba = Probe { width: 8000, height: 8000, bytes_per_pixel: 4, rotates: false };
        assert_eq!(rgba.decoded_bytes(), 256_000_000);
        let rotated = Probe { rotates: true, ..rgba };
        assert_eq!(rotated.decoded_bytes(), 512_000_000);
        let small = ThumbSize::parse("100x100").expect("size");
        // 100x100 of a square image: resized to 100x100, three copies of 4 bytes per pixel.
        assert_eq!(rgba.produce_bytes(&[small]), 256_000_000 + 100 * 100 * 4 * 3);
        // The largest variant counts; an enlarging size is what it costs.
        let big = ThumbSize::parse("20000x0").expect("size");
        assert_eq!(rgba.produce_bytes(&[small, big]), 256_000_000 + 20_000 * 20_000 * 4 * 3);
        // The header of a real image: an 8000² RGBA PNG is probed without decoding it.
        let limits = DecodeLimits { max_side: 16_384, max_alloc_bytes: 64 << 20 };
        let probe = probe(Cursor::new(bomb(8000)), limits).expect("probe");
        assert_eq!((probe.width, probe.height, probe.bytes_per_pixel, probe.rotates), (8000, 8000, 4, false));
        assert!(matches!(decode_bytes(&bomb(8000), limits), Err(ThumbError::Limits(_))));
    }

    #[test]
    fn invalid_sizes_are_refused() {
        for bad in ["0x0", "x10", "10x", "10x10q", "-1x5", "abc", "100000x1"] {
            assert!(ThumbSize::parse(bad).is_none(), "{bad}");
        }
    }
}

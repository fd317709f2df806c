//! Images in a prompt: what size and detail each part asks for, and what each provider
//! family bills for it by its published rule.
//!
//! The size is known only for inline images (`data:` URLs), read from the first bytes of
//! the file (PNG, JPEG, GIF and WebP headers); nothing is fetched. An image whose size is
//! unknown costs the most the family's rule allows for any image, so the estimate stays
//! an upper bound.

use base64::Engine;
use serde_json::Value;

/// One image part of a prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Image {
    /// Width × height in pixels, when the bytes are inline and their header is readable.
    pub size: Option<(u32, u32)>,
    pub detail: Detail,
}

/// OpenAI's `detail`: `auto` lets the model choose, so it is priced as `high`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    Low,
    High,
}

/// Base64 characters decoded at most to find the dimensions: a JPEG's size sits after its
/// EXIF/ICC segments, which are rarely past 64 KiB; decoding more would cost the hot path.
const HEADER_B64_CHARS: usize = 96 * 1024;

impl Image {
    /// Reads an OpenAI `image_url` part (`{"image_url": {"url", "detail"}}`, or the bare
    /// URL string some clients send), a Responses-style `input_image` part
    /// (`{"image_url": "…", "detail"}`) or an Anthropic `image` block
    /// (`{"source": {"type": "base64", "data"}}`).
    pub fn from_part(part: &Value) -> Self {
        let image_url = part.get("image_url");
        let detail = image_url
            .and_then(|u| u.get("detail"))
            .or_else(|| part.get("detail"))
            .and_then(Value::as_str);
        let detail = if detail == Some("low") {
            Detail::Low
        } else {
            Detail::High
        };
        let size = match image_url {
            Some(Value::String(url)) => data_url_size(url),
            Some(obj) => obj
                .get("url")
                .and_then(Value::as_str)
                .and_then(data_url_size),
            None => part
                .pointer("/source/data")
                .and_then(Value::as_str)
                .and_then(base64_size),
        };
        Self { size, detail }
    }

    /// OpenAI's rule for GPT-4o-class vision: `low` is a flat 85 tokens. `high` first
    /// scales the image to fit a 2048 × 2048 square, then so that its shortest side is at
    /// most 768 px, and bills 170 tokens per 512 px tile plus 85. Unknown size: the most
    /// tiles any image can end with (768 × 2048 → 2 × 4 tiles = 1445 tokens).
    pub fn openai_tokens(&self) -> u64 {
        const BASE: u64 = 85;
        const PER_TILE: u64 = 170;
        if self.detail == Detail::Low {
            return BASE;
        }
        let Some((w, h)) = self.size.filter(|(w, h)| *w > 0 && *h > 0) else {
            return BASE + PER_TILE * 8;
        };
        let (mut w, mut h) = (u64::from(w), u64::from(h));
        let longest = w.max(h);
        if longest > 2048 {
            (w, h) = (scaled(w, 2048, longest), scaled(h, 2048, longest));
        }
        let shortest = w.min(h);
        if shortest > 768 {
            (w, h) = (scaled(w, 768, shortest), scaled(h, 768, shortest));
        }
        BASE + PER_TILE * w.div_ceil(512) * h.div_ceil(512)
    }

    /// Anthropic's rule: an image whose long edge is over 1568 px is scaled down to it,
    /// then costs about width × height / 750 tokens, at most ~1600 (Anthropic also scales
    /// anything above ~1.15 megapixels down to that). `detail` does not exist there.
    /// Unknown size: the cap.
    pub fn anthropic_tokens(&self) -> u64 {
        const CAP: u64 = 1600;
        let Some((w, h)) = self.size.filter(|(w, h)| *w > 0 && *h > 0) else {
            return CAP;
        };
        let (mut w, mut h) = (u64::from(w), u64::from(h));
        let longest = w.max(h);
        if longest > 1568 {
            (w, h) = (scaled(w, 1568, longest), scaled(h, 1568, longest));
        }
        (w * h).div_ceil(750).min(CAP)
    }

    /// Google's rule for Gemini 2.x: an image with both sides at most 384 px is 258
    /// tokens; a larger one is cut into 768 × 768 tiles of 258 tokens each. Google
    /// publishes no bound for a large image, so an unknown size is priced as a 3072 ×
    /// 3072 image (16 tiles), a bound of ours.
    pub fn gemini_tokens(&self) -> u64 {
        const PER_TILE: u64 = 258;
        let Some((w, h)) = self.size.filter(|(w, h)| *w > 0 && *h > 0) else {
            return PER_TILE * 16;
        };
        if w <= 384 && h <= 384 {
            return PER_TILE;
        }
        PER_TILE * u64::from(w.div_ceil(768)) * u64::from(h.div_ceil(768))
    }
}

/// `side × target / reference`, rounded up (a tile more rather than one less).
fn scaled(side: u64, target: u64, reference: u64) -> u64 {
    (side * target).div_ceil(reference).max(1)
}

/// Dimensions of a `data:<type>;base64,<data>` URL's image.
fn data_url_size(url: &str) -> Option<(u32, u32)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    if !meta.ends_with(";base64") {
        return None;
    }
    base64_size(data)
}

/// Dimensions of base64-encoded image bytes, decoding only their beginning.
fn base64_size(data: &str) -> Option<(u32, u32)> {
    let data = data.trim_start();
    // A whole number of 4-character groups, so the prefix decodes on its own.
    let take = data.len().min(HEADER_B64_CHARS) / 4 * 4;
    let prefix = data.get(..take)?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(prefix)
        .ok()?;
    dimensions(&bytes)
}

/// Width and height from the header of a PNG, JPEG, GIF or WebP file (or its beginning).
pub fn dimensions(bytes: &[u8]) -> Option<(u32, u32)> {
    let be16 = |at: usize| -> Option<u32> {
        Some(u32::from(u16::from_be_bytes([
            *bytes.get(at)?,
            *bytes.get(at + 1)?,
        ])))
    };
    let le16 = |at: usize| -> Option<u32> {
        Some(u32::from(u16::from_le_bytes([
            *bytes.get(at)?,
            *bytes.get(at + 1)?,
        ])))
    };
    let le24 = |at: usize| -> Option<u32> {
        Some(u32::from_le_bytes([
            *bytes.get(at)?,
            *bytes.get(at + 1)?,
            *bytes.get(at + 2)?,
            0,
        ]))
    };
    let be32 = |at: usize| -> Option<u32> {
        Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
    };
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.get(12..16) == Some(b"IHDR") {
        return Some((be32(16)?, be32(20)?));
    }
    if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        return Some((le16(6)?, le16(8)?));
    }
    if bytes.starts_with(b"RIFF") && bytes.get(8..12) == Some(b"WEBP") {
        return match bytes.get(12..16)? {
            // Lossy: 14-bit width and height after the frame tag and start code.
            b"VP8 " => Some((le16(26)? & 0x3fff, le16(28)? & 0x3fff)),
            // Lossless: 14 bits each (minus one) after the signature byte.
            b"VP8L" => {
                let bits = u32::from_le_bytes(bytes.get(21..25)?.try_into().ok()?);
                Some(((bits & 0x3fff) + 1, ((bits >> 14) & 0x3fff) + 1))
            }
            // Extended: 24 bits each (minus one) of the canvas.
            b"VP8X" => Some((le24(24)? + 1, le24(27)? + 1)),
            _ => None,
        };
    }
    if bytes.starts_with(&[0xff, 0xd8]) {
        // Walk the segments to a start-of-frame marker (C0–CF but C4, C8, CC).
        let mut at = 2;
        while at + 4 <= bytes.len() {
            if bytes[at] != 0xff {
                return None;
            }
            let marker = bytes[at + 1];
            if marker == 0xff {
                at += 1; // fill byte
                continue;
            }
            let len = usize::try_from(be16(at + 2)?).ok()?;
            if (0xc0..=0xcf).contains(&marker) && ![0xc4, 0xc8, 0xcc].contains(&marker) {
                return Some((be16(at + 7)?, be16(at + 5)?));
            }
            at += 2 + len;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn image(w: u32, h: u32, detail: Detail) -> Image {
        Image {
            size: Some((w, h)),
            detail,
        }
    }

    #[test]
    fn openai_figures_from_its_vision_guide() {
        // "A 1024 x 1024 square image in detail: high mode costs 765 tokens."
        assert_eq!(image(1024, 1024, Detail::High).openai_tokens(), 765);
        // "A 2048 x 4096 image in detail: high mode costs 1105 tokens."
        assert_eq!(image(2048, 4096, Detail::High).openai_tokens(), 1105);
        // "A 4096 x 8192 image in detail: low most costs 85 tokens."
        assert_eq!(image(4096, 8192, Detail::Low).openai_tokens(), 85);
        // Small images are not scaled up: one tile.
        assert_eq!(image(300, 200, Detail::High).openai_tokens(), 255);
    }

    #[test]
    fn an_unknown_size_costs_the_most_any_image_can() {
        let unknown = Image {
            size: None,
            detail: Detail::High,
        };
        assert_eq!(unknown.openai_tokens(), 1445);
        let worst = (1..=64)
            .flat_map(|w| (1..=64).map(move |h| (w * 128, h * 128)))
            .map(|(w, h)| image(w, h, Detail::High).openai_tokens())
            .max();
        assert_eq!(worst, Some(1445), "no known size costs more");
        assert_eq!(unknown.anthropic_tokens(), 1600);
        assert_eq!(
            Image {
                size: None,
                detail: Detail::Low
            }
            .openai_tokens(),
            85
        );
    }

    #[test]
    fn anthropic_figures_from_its_vision_guide() {
        // Anthropic's table: 200×200 ≈ 54 tokens, 1000×1000 ≈ 1334, 1092×1092 ≈ 1590.
        assert_eq!(image(200, 200, Detail::High).anthropic_tokens(), 54);
        assert_eq!(image(1000, 1000, Detail::High).anthropic_tokens(), 1334);
        assert_eq!(image(1092, 1092, Detail::High).anthropic_tokens(), 1590);
        // Larger images are scaled down: never past the cap.
        assert_eq!(image(4000, 3000, Detail::Low).anthropic_tokens(), 1600);
    }

    #[test]
    fn gemini_figures_from_its_token_guide() {
        assert_eq!(image(384, 384, Detail::High).gemini_tokens(), 258);
        // 1000 × 1000 → 2 × 2 tiles of 768.
        assert_eq!(image(1000, 1000, Detail::High).gemini_tokens(), 1032);
    }

    /// A real 3 × 2 PNG header (signature, IHDR) and the like for the other formats.
    #[test]
    fn dimensions_come_from_the_headers() {
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
        png.extend_from_slice(&640u32.to_be_bytes());
        png.extend_from_slice(&480u32.to_be_bytes());
        assert_eq!(dimensions(&png), Some((640, 480)));

        let gif = b"GIF89a\x20\x03\x58\x02";
        assert_eq!(dimensions(gif), Some((800, 600)));

        // SOI, an APP0 segment of 16 bytes, then SOF0 with height 1080, width 1920.
        let mut jpeg = vec![0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10];
        jpeg.extend_from_slice(&[0; 14]);
        jpeg.extend_from_slice(&[0xff, 0xc0, 0x00, 0x11, 0x08, 0x04, 0x38, 0x07, 0x80]);
        assert_eq!(dimensions(&jpeg), Some((1920, 1080)));

        let mut webp = b"RIFF\0\0\0\0WEBPVP8X\x0a\0\0\0\0\0\0\0".to_vec();
        webp.extend_from_slice(&[0xff, 0x03, 0x00, 0xff, 0x01, 0x00]); // 1024 × 512
        assert_eq!(dimensions(&webp), Some((1024, 512)));

        assert_eq!(dimensions(b"not an image"), None);
        assert_eq!(dimensions(&[0xff, 0xd8, 0xff]), None, "cut short");
    }

    #[test]
    fn parts_give_their_size_and_detail() {
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
        png.extend_from_slice(&1024u32.to_be_bytes());
        png.extend_from_slice(&1024u32.to_be_bytes());
        png.extend_from_slice(&[8, 6, 0, 0, 0]);
        let b64 = base64::engine::general_purpose::STANDARD.encode(&png);
        let url = format!("data:image/png;base64,{b64}");
        let part = json!({"type": "image_url", "image_url": {"url": url, "detail": "auto"}});
        assert_eq!(
            Image::from_part(&part),
            image(1024, 1024, Detail::High),
            "auto is priced as high"
        );
        let low = json!({"type": "image_url", "image_url": {"url": "https://x/cat.png", "detail": "low"}});
        assert_eq!(
            Image::from_part(&low),
            Image {
                size: None,
                detail: Detail::Low
            }
        );
        let bare = json!({"type": "image_url", "image_url": url});
        assert_eq!(Image::from_part(&bare).size, Some((1024, 1024)));
        let anthropic = json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": b64}});
        assert_eq!(Image::from_part(&anthropic).size, Some((1024, 1024)));
        let garbage =
            json!({"type": "image_url", "image_url": {"url": "data:image/png;base64,!!!!"}});
        assert_eq!(Image::from_part(&garbage).size, None);
    }
}

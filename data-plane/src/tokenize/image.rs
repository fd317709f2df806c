//! Images in a prompt: what size and detail each part asks for, and what a provider bills
//! for it by its published rule ([`ImageRule`]). OpenAI bills differently per model (tiles
//! with different constants, or 32 px patches times a multiplier), so its rule is looked
//! up by model name in a table ([`ImageRule::openai`]).
//!
//! The size is known only for inline images (`data:` URLs), read from the first bytes of
//! the file (PNG, JPEG, GIF and WebP headers); nothing is fetched. An image whose size is
//! unknown costs the most the rule allows for any image, so the estimate stays an upper
//! bound.

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

    /// OpenAI's tile rule (GPT-4o-class vision): `low` is a flat `base`. `high` first
    /// scales the image to fit a 2048 × 2048 square, then so that its shortest side is at
    /// most 768 px, and bills `per_tile` per 512 px tile plus `base`. Unknown size: the
    /// most tiles any image can end with (768 × 2048 → 2 × 4 tiles; 1445 tokens for
    /// gpt-4o).
    fn tile_tokens(&self, base: u64, per_tile: u64) -> u64 {
        if self.detail == Detail::Low {
            return base;
        }
        let Some((w, h)) = self.known_size() else {
            return base + per_tile * 8;
        };
        let longest = w.max(h);
        let (w, h) = if longest > 2048 {
            (scaled(w, 2048, longest), scaled(h, 2048, longest))
        } else {
            (w, h)
        };
        let shortest = w.min(h);
        let (w, h) = if shortest > 768 {
            (scaled(w, 768, shortest), scaled(h, 768, shortest))
        } else {
            (w, h)
        };
        base + per_tile * w.div_ceil(512) * h.div_ceil(512)
    }

    /// OpenAI's patch rule (gpt-4.1-mini and the like): the image is covered by 32 × 32 px
    /// patches; past [`MAX_PATCHES`] OpenAI scales it down until it fits, and bills the
    /// patches times the model's multiplier (`hundredths` / 100), rounded up. `detail`
    /// does not change it. The count here is the unscaled one, capped at
    /// [`MAX_PATCHES`]: never below what the scaled image has (scaling only removes
    /// patches), and what OpenAI was measured to bill for large images (a 4000 × 1474
    /// image on gpt-4.1-mini billed the full 1536 × 1.62, more than the scaled image's
    /// patches). Unknown size: the cap.
    fn patch_tokens(&self, hundredths: u64) -> u64 {
        let patches = self.known_size().map_or(MAX_PATCHES, |(w, h)| {
            (w.div_ceil(32) * h.div_ceil(32)).min(MAX_PATCHES)
        });
        (patches * hundredths).div_ceil(100)
    }

    /// Anthropic's rule: an image whose long edge is over 1568 px is scaled down to it,
    /// then costs about width × height / 750 tokens, at most ~1600 (Anthropic also scales
    /// anything above ~1.15 megapixels down to that). `detail` does not exist there.
    /// Unknown size: the cap.
    fn anthropic_tokens(&self) -> u64 {
        const CAP: u64 = 1600;
        let Some((w, h)) = self.known_size() else {
            return CAP;
        };
        let longest = w.max(h);
        let (w, h) = if longest > 1568 {
            (scaled(w, 1568, longest), scaled(h, 1568, longest))
        } else {
            (w, h)
        };
        (w * h).div_ceil(750).min(CAP)
    }

    /// Google's rule for Gemini 2.x: an image with both sides at most 384 px is 258
    /// tokens; a larger one is cut into 768 × 768 tiles of 258 tokens each. Google
    /// publishes no bound for a large image, so an unknown size is priced as a 3072 ×
    /// 3072 image (16 tiles), a bound of ours.
    fn gemini_tokens(&self) -> u64 {
        const PER_TILE: u64 = 258;
        let Some((w, h)) = self.known_size() else {
            return PER_TILE * 16;
        };
        if w <= 384 && h <= 384 {
            return PER_TILE;
        }
        PER_TILE * w.div_ceil(768) * h.div_ceil(768)
    }

    fn known_size(&self) -> Option<(u64, u64)> {
        self.size
            .filter(|(w, h)| *w > 0 && *h > 0)
            .map(|(w, h)| (u64::from(w), u64::from(h)))
    }
}

/// The most 32 × 32 px patches OpenAI's patch rule bills for one image.
pub const MAX_PATCHES: u64 = 1536;

/// How a provider bills one image, with the rule's constants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageRule {
    /// OpenAI's 512 px tiles: `base` (all of `low`) plus `per_tile` for each tile.
    Tiles {
        base: u64,
        per_tile: u64,
    },
    /// OpenAI's 32 px patches, times `hundredths` / 100 tokens each.
    Patches {
        hundredths: u64,
    },
    Anthropic,
    Gemini,
}

impl ImageRule {
    /// gpt-4o's rule, OpenAI's first published one: for any model the table does not name.
    pub const GPT_4O: Self = Self::Tiles {
        base: 85,
        per_tile: 170,
    };

    /// Tokens billed at most for `image`.
    pub fn tokens(self, image: &Image) -> u64 {
        match self {
            Self::Tiles { base, per_tile } => image.tile_tokens(base, per_tile),
            Self::Patches { hundredths } => image.patch_tokens(hundredths),
            Self::Anthropic => image.anthropic_tokens(),
            Self::Gemini => image.gemini_tokens(),
        }
    }

    /// The rules an OpenAI model's images may be billed by, from its name (lowercase,
    /// without a vendor prefix): the first entry of [`OPENAI_RULES`] whose prefix it
    /// starts with, else gpt-4o's. More than one rule means we could not tell which
    /// OpenAI applies; the estimate takes the largest.
    pub fn openai(model: &str) -> &'static [Self] {
        OPENAI_RULES
            .iter()
            .find(|(prefix, _)| model.starts_with(prefix))
            .map_or(GPT_4O_ONLY, |(_, rules)| *rules)
    }
}

const GPT_4O_ONLY: &[ImageRule] = &[ImageRule::GPT_4O];

/// OpenAI's image rules by model-name prefix, most specific first (a prefix never comes
/// after a shorter one it starts with; a test checks it). Sources, as far as they could
/// be checked (OpenAI's own "Calculating costs" page could not be read here):
/// - the patch rule, its 1536 cap and the 1.62 / 2.46 multipliers of gpt-4.1-mini /
///   gpt-4.1-nano: a copy of OpenAI's vision guide; the same figures for gpt-5-mini /
///   gpt-5-nano and 1.72 for o4-mini: third-party reproductions of the guide's table;
/// - the tile constants: billing measured on the API and published on OpenAI's community
///   forum (a 128 × 64 image with five words of text: gpt-4o-mini 2845 low and 8512 high,
///   i.e. 2833 and 2833 + 5667; o3 86 and 236, i.e. 75 and 75 + 150; gpt-4.1 the same as
///   gpt-4o; o1 below o3, so 75 + 150 bounds it; the patch models 26 and 33).
///
/// Where a figure is not confirmed, the larger candidate is used.
const OPENAI_RULES: &[(&str, &[ImageRule])] = &[
    (
        "gpt-4o-mini",
        &[ImageRule::Tiles {
            base: 2833,
            per_tile: 5667,
        }],
    ),
    ("gpt-4.1-mini", &[ImageRule::Patches { hundredths: 162 }]),
    ("gpt-4.1-nano", &[ImageRule::Patches { hundredths: 246 }]),
    // Billed by tiles as gpt-4o (measured); third-party calculators and a forum post
    // give it the patch rule at 1 token a patch, which costs more for some sizes: both.
    (
        "gpt-4.1",
        &[ImageRule::GPT_4O, ImageRule::Patches { hundredths: 100 }],
    ),
    ("gpt-5-mini", &[ImageRule::Patches { hundredths: 162 }]),
    ("gpt-5-nano", &[ImageRule::Patches { hundredths: 246 }]),
    // gpt-5.2 was measured (forum, not the guide) at 1.2 × gpt-4o's tile figures.
    (
        "gpt-5.2",
        &[ImageRule::Tiles {
            base: 102,
            per_tile: 204,
        }],
    ),
    // The gpt-5 tile constants are not confirmed here (the candidates are 70 + 140, as
    // we recall the guide's table, and the o-series' 75 + 150): gpt-4o's 85 + 170, larger
    // than both, is kept by not naming gpt-5 at all.
    ("o4-mini", &[ImageRule::Patches { hundredths: 172 }]),
    (
        "o1",
        &[ImageRule::Tiles {
            base: 75,
            per_tile: 150,
        }],
    ),
    (
        "o3",
        &[ImageRule::Tiles {
            base: 75,
            per_tile: 150,
        }],
    ),
];

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

    fn openai(model: &str, image: Image) -> u64 {
        ImageRule::openai(model)
            .iter()
            .map(|rule| rule.tokens(&image))
            .max()
            .unwrap_or(0)
    }

    const UNKNOWN: Image = Image {
        size: None,
        detail: Detail::High,
    };

    #[test]
    fn gpt_4o_mini_bills_its_own_tile_constants() {
        // 1024 × 1024 high: scaled to 768 × 768, 2 × 2 tiles: 2833 + 4 × 5667.
        let mini = "gpt-4o-mini-2024-07-18";
        assert_eq!(openai(mini, image(1024, 1024, Detail::High)), 25501);
        assert_eq!(openai(mini, image(1024, 1024, Detail::Low)), 2833);
        // One tile, the forum's measured 128 × 64 figure: 2833 + 5667.
        assert_eq!(openai(mini, image(128, 64, Detail::High)), 8500);
        // Unknown: 2 × 4 tiles, the most any image can have.
        assert_eq!(openai(mini, UNKNOWN), 2833 + 8 * 5667);
        // gpt-4o itself keeps 85 + 170 per tile.
        assert_eq!(
            openai("gpt-4o-2024-08-06", image(1024, 1024, Detail::High)),
            765
        );
    }

    #[test]
    fn patch_models_bill_patches_times_their_multiplier() {
        // 1024 × 1024 = 32 × 32 = 1024 patches, under the cap (the guide's example).
        let square = image(1024, 1024, Detail::High);
        assert_eq!(
            openai("gpt-4.1-mini", square),
            1659,
            "1024 × 1.62 = 1658.88"
        );
        assert_eq!(openai("gpt-5-mini", square), 1659);
        assert_eq!(
            openai("gpt-4.1-nano", square),
            2520,
            "1024 × 2.46 = 2519.04"
        );
        assert_eq!(openai("gpt-5-nano-2025-08-07", square), 2520);
        assert_eq!(openai("o4-mini", square), 1762, "1024 × 1.72 = 1761.28");
        // `detail` does not apply to patches.
        assert_eq!(openai("gpt-4.1-mini", image(1024, 1024, Detail::Low)), 1659);
        // 128 × 64 = 4 × 2 patches: 8 × 1.62 → 13 (the forum measured 26 with 12-13
        // tokens of text around it).
        assert_eq!(openai("gpt-4.1-mini", image(128, 64, Detail::High)), 13);
        // 1800 × 2400 needs 57 × 75 = 4275 patches, over 1536: scaled down (the guide
        // ends at 1452); priced at the cap, 1536 × 1.62 = 2488.32.
        assert_eq!(
            openai("gpt-4.1-mini", image(1800, 2400, Detail::High)),
            2489
        );
        // Unknown size, and any size at all: never past the cap.
        assert_eq!(
            openai("gpt-4.1-nano", UNKNOWN),
            3779,
            "1536 × 2.46 = 3778.56"
        );
        assert_eq!(openai("o4-mini", UNKNOWN), 2642, "1536 × 1.72 = 2641.92");
        let worst = (1..=64)
            .flat_map(|w| (1..=64).map(move |h| (w * 100, h * 100)))
            .map(|(w, h)| openai("o4-mini", image(w, h, Detail::High)))
            .max();
        assert_eq!(worst, Some(2642));
    }

    #[test]
    fn o_series_bill_75_plus_150_per_tile() {
        assert_eq!(openai("o3", image(1024, 1024, Detail::High)), 75 + 4 * 150);
        assert_eq!(openai("o1-2024-12-17", image(1024, 1024, Detail::Low)), 75);
        assert_eq!(openai("o3-pro", UNKNOWN), 75 + 8 * 150);
    }

    #[test]
    fn unconfirmed_models_take_the_larger_candidate() {
        // gpt-4.1: tiles (measured) or 1 token a patch (an earlier guide), whichever is
        // more: 1024 patches beat 765 for a 1024 × 1024 image, 255 beats 16 for 100 × 100.
        assert_eq!(openai("gpt-4.1", image(1024, 1024, Detail::High)), 1024);
        assert_eq!(
            openai("gpt-4.1-2025-04-14", image(100, 100, Detail::High)),
            255
        );
        assert_eq!(openai("gpt-4.1", UNKNOWN), 1536);
        // gpt-5 is not named: gpt-4o's 85 + 170, above the 70/140 and 75/150 quoted.
        assert_eq!(openai("gpt-5", image(1024, 1024, Detail::High)), 765);
        assert_eq!(
            openai("gpt-5.2", image(1024, 1024, Detail::High)),
            102 + 4 * 204
        );
        // An unknown name: gpt-4o's rule.
        assert_eq!(ImageRule::openai("prod-vision"), &[ImageRule::GPT_4O]);
    }

    #[test]
    fn every_table_entry_is_reachable() {
        // A prefix after a shorter one it starts with would never be chosen.
        for (i, (later, _)) in OPENAI_RULES.iter().enumerate() {
            for (earlier, _) in &OPENAI_RULES[..i] {
                assert!(
                    !later.starts_with(earlier),
                    "{later} is hidden by {earlier}"
                );
            }
        }
    }

    #[test]
    fn openai_figures_from_its_vision_guide() {
        // "A 1024 x 1024 square image in detail: high mode costs 765 tokens."
        assert_eq!(
            ImageRule::GPT_4O.tokens(&image(1024, 1024, Detail::High)),
            765
        );
        // "A 2048 x 4096 image in detail: high mode costs 1105 tokens."
        assert_eq!(
            ImageRule::GPT_4O.tokens(&image(2048, 4096, Detail::High)),
            1105
        );
        // "A 4096 x 8192 image in detail: low most costs 85 tokens."
        assert_eq!(
            ImageRule::GPT_4O.tokens(&image(4096, 8192, Detail::Low)),
            85
        );
        // Small images are not scaled up: one tile.
        assert_eq!(
            ImageRule::GPT_4O.tokens(&image(300, 200, Detail::High)),
            255
        );
    }

    #[test]
    fn an_unknown_size_costs_the_most_any_image_can() {
        let unknown = Image {
            size: None,
            detail: Detail::High,
        };
        assert_eq!(ImageRule::GPT_4O.tokens(&unknown), 1445);
        let worst = (1..=64)
            .flat_map(|w| (1..=64).map(move |h| (w * 128, h * 128)))
            .map(|(w, h)| ImageRule::GPT_4O.tokens(&image(w, h, Detail::High)))
            .max();
        assert_eq!(worst, Some(1445), "no known size costs more");
        assert_eq!(unknown.anthropic_tokens(), 1600);
        assert_eq!(
            ImageRule::GPT_4O.tokens(&Image {
                size: None,
                detail: Detail::Low
            }),
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

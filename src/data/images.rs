//! A folder of images (PNG or JPEG) with declared preprocessing, as torchvision-style
//! pipelines do it: decode → RGB or grayscale → resize (bilinear) → center crop → scale →
//! normalize per channel (`(v − mean) / std`) → NCHW or NHWC.

use std::path::Path;

use image::imageops::FilterType;
use sha2::{Digest, Sha256};

use super::folder::{labels, list};
use super::{DataError, Dataset};

/// The preprocessing a suite declares for an image dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct ImagePrep {
    /// 1 (grayscale) or 3 (RGB).
    pub channels: usize,
    pub resize: Resize,
    /// Center crop `(height, width)` after the resize.
    pub crop: Option<(usize, usize)>,
    /// Pixel values (0–255) are multiplied by this first (default 1/255).
    pub scale: f32,
    /// Per channel, after scaling.
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    /// Channels first (`[C, H, W]`, default) or last (`[H, W, C]`).
    pub channels_last: bool,
}

/// How images are resized before the crop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Resize {
    /// Every image must already have the crop's (or the first image's) size.
    None,
    /// To exactly `(height, width)`.
    Exact(usize, usize),
    /// The shorter side to this length, keeping the aspect ratio.
    ShorterSide(usize),
}

/// Loads every image of `dir` (or of its class subfolders) through `prep`.
pub fn load_images(
    name: &str,
    dir: &Path,
    prep: &ImagePrep,
    labels_csv: Option<(&Path, Option<&str>)>,
) -> Result<Dataset, DataError> {
    let listing = list(dir)?;
    let mut hasher = Sha256::new();
    let mut values = Vec::new();
    let mut shape: Option<(usize, usize)> = None;
    for f in &listing.files {
        let bytes = super::read_file(f)?;
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(&bytes);
        let bad = |reason: String| DataError::Image { path: f.clone(), reason };
        let img = decode(&bytes).map_err(bad)?;
        let target = match prep.resize {
            Resize::None => None,
            Resize::Exact(h, w) => Some((w as f64, h as f64)),
            Resize::ShorterSide(s) => {
                let (w, h) = (img.width() as f64, img.height() as f64);
                let k = s as f64 / w.min(h);
                Some(((w * k).round(), (h * k).round()))
            }
        };
        let img = match target {
            None => img,
            Some((w, h)) => {
                if w * h > super::MAX_IMAGE_PIXELS as f64 || w.max(h) > super::MAX_IMAGE_SIDE as f64 {
                    return Err(bad(format!(
                        "resizing its {}×{} pixels gives {w}×{h}, more than qbench's limits ({} pixels, {} a side); resize to a smaller size",
                        img.width(),
                        img.height(),
                        super::MAX_IMAGE_PIXELS,
                        super::MAX_IMAGE_SIDE
                    )));
                }
                img.resize_exact(w as u32, h as u32, FilterType::Triangle)
            }
        };
        let img = match prep.crop {
            Some((ch, cw)) => {
                let (w, h) = (img.width() as usize, img.height() as usize);
                if ch > h || cw > w {
                    return Err(bad(format!(
                        "it is {w}×{h} after the resize, smaller than the {cw}×{ch} crop; resize it larger first"
                    )));
                }
                img.crop_imm(((w - cw) / 2) as u32, ((h - ch) / 2) as u32, cw as u32, ch as u32)
            }
            None => img,
        };
        let (w, h) = (img.width() as usize, img.height() as usize);
        match shape {
            None => shape = Some((h, w)),
            Some(s) if s != (h, w) => {
                return Err(bad(format!(
                    "it is {w}×{h} but the first image is {}×{}; declare resize or crop so every image has one size",
                    s.1, s.0
                )))
            }
            Some(_) => {}
        }
        if values.len() + h * w * prep.channels > super::MAX_DATASET_VALUES {
            return Err(bad(format!(
                "the images up to this one hold more than qbench's limit of {} values for a dataset; use fewer or smaller images",
                super::MAX_DATASET_VALUES
            )));
        }
        let pixels: Vec<u8> = if prep.channels == 1 { img.to_luma8().into_raw() } else { img.to_rgb8().into_raw() };
        let c = prep.channels;
        // The default 1/255 divides, as torchvision's ToTensor does (and as the IDX loader),
        // so a PNG of a dataset image gives exactly the IDX values.
        let scaled = |p: u8| if prep.scale == 1.0 / 255.0 { p as f32 / 255.0 } else { p as f32 * prep.scale };
        let norm = |ch: usize, p: u8| (scaled(p) - prep.mean[ch]) / prep.std[ch];
        if prep.channels_last {
            values.extend(pixels.iter().enumerate().map(|(i, &p)| norm(i % c, p)));
        } else {
            for ch in 0..c {
                values.extend((0..h * w).map(|i| norm(ch, pixels[i * c + ch])));
            }
        }
    }
    let (h, w) = shape.unwrap_or((0, 0));
    // (An empty folder is refused by `list`.)
    let item_shape = if prep.channels_last { vec![h, w, prep.channels] } else { vec![prep.channels, h, w] };
    let labels = labels(&listing, dir, labels_csv, &mut hasher)?;
    Ok(Dataset {
        name: name.to_string(),
        item_shape,
        values,
        labels,
        sha256: crate::hash::hex(&hasher.finalize()),
        inputs_path: dir.to_path_buf(),
        labels_path: labels_csv.map(|(p, _)| p.to_path_buf()),
        parts: Vec::new(),
        texts: None,
    })
}

/// Decodes PNG or JPEG within qbench's limits: the header's size is checked before pixels are
/// allocated (a 1 KiB PNG may declare 100 000 × 100 000 pixels).
fn decode(bytes: &[u8]) -> Result<image::DynamicImage, String> {
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(super::MAX_IMAGE_SIDE as u32);
    limits.max_image_height = Some(super::MAX_IMAGE_SIDE as u32);
    limits.max_alloc = Some(super::MAX_IMAGE_PIXELS * 4);
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| format!("it cannot be read ({e})"))?;
    reader.limits(limits);
    reader.decode().map_err(|e| match e {
        image::ImageError::Limits(l) => format!(
            "its header declares a size beyond qbench's limits ({l}: at most {} a side, {} pixels); resize the image",
            super::MAX_IMAGE_SIDE,
            super::MAX_IMAGE_PIXELS
        ),
        e => format!("it cannot be decoded as PNG or JPEG ({e}); the file is corrupt or of another format"),
    })
}

//! Folder datasets: images with declared preprocessing and raw byte files, checked against the
//! IDX loader on the same pixels and against preprocessing computed by hand.

mod common;

use std::path::Path;

use qbench::data::{load_idx, load_images, load_raw, ImagePrep, Resize};

fn gray(prep_channels: usize) -> ImagePrep {
    ImagePrep {
        channels: prep_channels,
        resize: Resize::None,
        crop: None,
        scale: 1.0 / 255.0,
        mean: vec![0.0; prep_channels],
        std: vec![1.0; prep_channels],
        channels_last: false,
    }
}

#[test]
fn class_folders_of_pngs_give_the_idx_pixels_and_labels() {
    let idx = load_idx("fm", &common::fashion_images(), &common::fashion_labels()).unwrap().slice(0..60);
    let dir = tempfile::tempdir().unwrap();
    // One subfolder per class (names sort in class order), 28×28 grayscale PNGs.
    let mut expected = Vec::new();
    for class in 0..10u32 {
        std::fs::create_dir(dir.path().join(format!("class-{class}"))).unwrap();
    }
    for (i, &label) in idx.labels().iter().enumerate() {
        let px: Vec<u8> = idx.values[i * 784..(i + 1) * 784].iter().map(|v| (v * 255.0).round() as u8).collect();
        let img = image::GrayImage::from_raw(28, 28, px).unwrap();
        img.save(dir.path().join(format!("class-{label}/{i:03}.png"))).unwrap();
        expected.push((label, i));
    }
    let d = load_images("png", dir.path(), &gray(1), None).unwrap();
    assert_eq!((d.len(), d.item_shape.as_slice()), (60, &[1, 28, 28][..]));
    // Items come class by class, in file-name order within a class.
    expected.sort();
    for (k, (label, i)) in expected.iter().enumerate() {
        assert_eq!(d.labels()[k], *label);
        assert_eq!(&d.values[k * 784..(k + 1) * 784], &idx.values[i * 784..(i + 1) * 784], "item {k} (idx {i})");
    }
    // A CSV with a file column overrides the folders' classes, matched by name.
    let mut csv = String::from("file,label\n");
    for (label, i) in &expected {
        csv.push_str(&format!("class-{label}/{i:03}.png,{}\n", 9 - label));
    }
    let other = tempfile::tempdir().unwrap();
    std::fs::write(other.path().join("labels.csv"), csv).unwrap();
    let d2 = load_images("png", dir.path(), &gray(1), Some((&other.path().join("labels.csv"), None))).unwrap();
    assert!(d2.labels().iter().zip(d.labels()).all(|(a, b)| *a == 9 - b));
    // A corrupt image names the file.
    std::fs::write(dir.path().join("class-3/zzz.png"), b"not a png").unwrap();
    let e = load_images("png", dir.path(), &gray(1), None).err().unwrap().to_string();
    assert!(e.contains("zzz.png") && e.contains("cannot be decoded"), "{e}");
}

#[test]
fn resize_crop_normalize_and_layout_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    // A 4×2 (w×h) RGB image: pixel (x, y) = (10x + y, 100, 200 − x).
    let img = image::RgbImage::from_fn(4, 2, |x, y| image::Rgb([(10 * x + y) as u8, 100, (200 - x) as u8]));
    img.save(dir.path().join("a.png")).unwrap();
    let prep = ImagePrep {
        channels: 3,
        resize: Resize::None,
        crop: Some((2, 2)),
        scale: 1.0,
        mean: vec![1.0, 100.0, 0.0],
        std: vec![2.0, 1.0, 10.0],
        channels_last: false,
    };
    let d = load_images("a", dir.path(), &prep, None).unwrap();
    assert_eq!(d.item_shape, vec![3, 2, 2]);
    // Center crop keeps x = 1, 2; channels first: R then G then B, row-major.
    let r = |x: u32, y: u32| ((10 * x + y) as f32 - 1.0) / 2.0;
    let b = |x: u32| (200 - x) as f32 / 10.0;
    assert_eq!(d.values, vec![r(1, 0), r(2, 0), r(1, 1), r(2, 1), 0.0, 0.0, 0.0, 0.0, b(1), b(2), b(1), b(2)]);
    let d = load_images("a", dir.path(), &ImagePrep { channels_last: true, ..prep.clone() }, None).unwrap();
    assert_eq!(d.item_shape, vec![2, 2, 3]);
    assert_eq!(&d.values[..6], &[r(1, 0), 0.0, b(1), r(2, 0), 0.0, b(2)]);
    // Resizing a uniform image keeps its value; the shorter side goes to the given length.
    let flat = image::RgbImage::from_pixel(8, 4, image::Rgb([51, 51, 51]));
    std::fs::remove_file(dir.path().join("a.png")).unwrap();
    flat.save(dir.path().join("b.png")).unwrap();
    let d = load_images("b", dir.path(), &ImagePrep { resize: Resize::ShorterSide(2), crop: None, ..gray(3) }, None)
        .unwrap();
    assert_eq!(d.item_shape, vec![3, 2, 4]);
    assert!(d.values.iter().all(|&v| (v - 0.2).abs() < 1e-6), "{:?}", d.values);
    // Images of different sizes without resize or crop: refused, naming the file.
    image::RgbImage::from_pixel(3, 3, image::Rgb([0, 0, 0])).save(dir.path().join("c.png")).unwrap();
    let e = load_images("b", dir.path(), &gray(3), None).err().unwrap().to_string();
    assert!(e.contains("c.png") && e.contains("declare resize or crop"), "{e}");
}

#[test]
fn raw_files_are_byte_tensors_cut_or_padded() {
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("files");
    std::fs::create_dir(&files).unwrap();
    std::fs::write(files.join("a.bin"), [1u8, 2, 3, 4, 5, 6]).unwrap();
    std::fs::write(files.join("b.bin"), [255u8, 0]).unwrap();
    std::fs::write(dir.path().join("labels.csv"), "file,label\nb.bin,1\na.bin,0\n").unwrap();
    let d = load_raw("raw", &files, 4, Some((&dir.path().join("labels.csv"), None))).unwrap();
    assert_eq!(d.item_shape, vec![4]);
    assert_eq!(d.values, vec![1.0, 2.0, 3.0, 4.0, 255.0, 0.0, 0.0, 0.0]);
    assert_eq!(d.labels(), &[0, 1]);
    // The hash covers the bytes: change one byte, the dataset hash changes.
    let before = d.sha256.clone();
    std::fs::write(files.join("b.bin"), [254u8, 0]).unwrap();
    assert_ne!(load_raw("raw", &files, 4, None).unwrap().sha256, before);
    // A label file missing an item names it.
    std::fs::write(dir.path().join("short.csv"), "file,label\na.bin,0\n").unwrap();
    let e = load_raw("raw", &files, 4, Some((&dir.path().join("short.csv"), None))).err().unwrap().to_string();
    assert!(e.contains("no label for b.bin"), "{e}");
    assert!(load_raw("raw", Path::new("/nonexistent-qbench"), 4, None).is_err());
}

#[test]
fn a_suite_runs_an_onnx_model_on_an_image_folder() {
    let idx = load_idx("fm", &common::fashion_images(), &common::fashion_labels()).unwrap().slice(0..100);
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    for class in 0..10u32 {
        std::fs::create_dir_all(images.join(format!("{class}"))).unwrap();
    }
    for (i, &label) in idx.labels().iter().enumerate() {
        let px: Vec<u8> = idx.values[i * 784..(i + 1) * 784].iter().map(|v| (v * 255.0).round() as u8).collect();
        image::GrayImage::from_raw(28, 28, px).unwrap().save(images.join(format!("{label}/{i:03}.png"))).unwrap();
    }
    let model = common::repo().join("suites/models/cnn-tf-style.onnx");
    let suite = |layout: &str| {
        format!(
            "name = \"t\"\nschemes = [\"f32\"]\nbackends = [\"tract-cpu\"]\nbatch_sizes = [10]\n[measure]\nwarmup_iters = 1\nmin_samples = 3\nmax_samples = 10\nmax_time_ms = 20\n\n[[datasets]]\nname = \"png\"\nformat = \"images\"\ninputs = \"images\"\n[datasets.image]\nchannels = 1\nlayout = \"{layout}\"\n\n[[models]]\nname = \"cnn\"\npath = {model:?}\n[[models.inputs]]\nname = \"images\"\nshape = [\"N\", 1, 28, 28]\n"
        )
    };
    let run = |text: String| {
        std::fs::write(dir.path().join("suite.toml"), text).unwrap();
        std::process::Command::new(env!("CARGO_BIN_EXE_qbench"))
            .args(["run", "suite.toml", "--out", "out"])
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    let o = run(suite("nhcw"));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("suite.toml:") && err.contains("layout \"nhcw\": use \"nchw\""), "{err}");
    let o = run(suite("nchw"));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let run_dir = std::fs::read_dir(dir.path().join("out/t")).unwrap().next().unwrap().unwrap().path();
    let r = &qbench::report::jsonl::read_records(&run_dir.join("records.jsonl")).unwrap()[0];
    assert_eq!(r.eval_items, Some(100));
    // The class folders are the labels: the CNN's accuracy on these 100 test images.
    assert!(r.top1_accuracy.unwrap() > 0.8, "{:?}", r.top1_accuracy);
}

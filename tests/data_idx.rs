//! IDX loading of the shipped Fashion-MNIST test set, against values computed
//! independently with Python's gzip module.

mod common;

use qbench::data::load_idx;

#[test]
fn fashion_mnist_test_set_loads_with_known_counts_labels_and_pixels() {
    let d = load_idx("fm", &common::fashion_images(), &common::fashion_labels()).unwrap();
    assert_eq!((d.len(), d.item_shape.as_slice()), (10_000, &[1, 28, 28][..]));
    assert_eq!(d.values.len(), 10_000 * 784);
    // Labels: in range, balanced (1000 per class), and the first ten as published.
    let labels = d.labels();
    assert!(labels.iter().all(|&l| l < 10));
    for class in 0..10u32 {
        assert_eq!(labels.iter().filter(|&&l| l == class).count(), 1000, "class {class}");
    }
    assert_eq!(&labels[..10], &[9, 2, 1, 1, 6, 1, 4, 6, 5, 7]);
    // Values are pixels / 255: recover the bytes exactly.
    let pixels: Vec<u8> = d.values.iter().map(|&v| (v * 255.0).round() as u8).collect();
    assert!(d.values.iter().zip(&pixels).all(|(&v, &p)| v == p as f32 / 255.0));
    // Pixel checksums (python: sum(px[:784]), sum(px[9999*784:]), sum(px), px[14*28+14]).
    let sum = |r: std::ops::Range<usize>| pixels[r].iter().map(|&p| p as u64).sum::<u64>();
    assert_eq!(sum(0..784), 33_456);
    assert_eq!(sum(9999 * 784..10_000 * 784), 24_390);
    assert_eq!(sum(0..pixels.len()), 573_469_082);
    assert_eq!(pixels[14 * 28 + 14], 110);
    assert_eq!(qbench::hash::sha256_hex(&pixels), "c867c93ff95360594e8ec3287995350b824dd110b11595c0e13d5423f621867a");
}

#[test]
fn corrupt_gzip_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = std::fs::read(common::fashion_images()).unwrap();
    bytes.truncate(bytes.len() / 2);
    let bad = dir.path().join("t10k-images-idx3-ubyte.gz");
    std::fs::write(&bad, &bytes).unwrap();
    let e = load_idx("fm", &bad, &common::fashion_labels()).unwrap_err().to_string();
    assert!(e.contains("is not valid gzip") && e.contains(&bad.display().to_string()), "{e}");
}

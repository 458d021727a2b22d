//! Sizes read from files are checked before anything is allocated: a header that lies is an
//! error naming the limit, and the counting allocator (an independent observation) shows that
//! the hostile sizes were never allocated. One test, so no other test's allocations overlap.

/// A hostile IDX pair: header fields are checked before anything is allocated, and a gzip
/// stream is decompressed only as far as the header declares.
#[test]
fn headers_that_lie_are_refused_before_allocating() {
    use flate2::{write::GzEncoder, Compression};
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let (img, lab) = (dir.path().join("i.gz"), dir.path().join("l.idx"));
    std::fs::write(&lab, qbench::data::encode_idx_labels(&[1])).unwrap();
    let header = |dims: [u32; 3]| {
        let mut h = 0x0803u32.to_be_bytes().to_vec();
        dims.iter().for_each(|d| h.extend_from_slice(&d.to_be_bytes()));
        h
    };
    // A gzip bomb: 256 MiB of zeros (256 KiB compressed) behind a header that declares one image.
    let mut gz = GzEncoder::new(Vec::new(), Compression::best());
    gz.write_all(&header([1, 28, 28])).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..256 {
        gz.write_all(&zeros).unwrap();
    }
    std::fs::write(&img, gz.finish().unwrap()).unwrap();
    let (result, allocated) = qbench::measure::alloc::measure(|| qbench::data::load_idx("t", &img, &lab));
    let e = result.unwrap_err().to_string();
    assert!(e.contains("header declares [1, 28, 28] = 784 bytes of data but the file holds more"), "{e}");
    // The file read whole (about 256 KiB) and the decoder's buffers, never the 256 MiB.
    let peak = allocated.expect("the counting allocator is installed").peak_bytes;
    assert!(peak < 8 << 20, "peak {peak} bytes");
    // Dimensions whose product overflows, one past the limit, and zero items.
    for (dims, words) in [
        ([u32::MAX, u32::MAX, u32::MAX], "product overflows"),
        ([1 << 12, 1 << 8, 1 << 9], "more than qbench's limit of 268435456 values"),
        ([0, 28, 28], "declares 0 items"),
    ] {
        std::fs::write(&img, header(dims)).unwrap();
        let e = qbench::data::load_idx("t", &img, &lab).unwrap_err().to_string();
        assert!(e.contains(words), "{dims:?}: {e}");
    }

    // NPY: a 128-byte file whose header claims 2^60 items, and one whose shape overflows.
    for (shape, words) in
        [("(1152921504606846976,)", "more than qbench's limit"), ("(4294967296, 4294967296, 16)", "multiply past 2^64")]
    {
        let npy = dir.path().join("x.npy");
        let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend((header.len() as u16).to_le_bytes());
        bytes.extend(header.as_bytes());
        bytes.extend([0u8; 64]);
        std::fs::write(&npy, &bytes).unwrap();
        let (result, allocated) = qbench::measure::alloc::measure(|| qbench::data::load_npy("t", &npy, None, None));
        let e = result.unwrap_err().to_string();
        assert!(e.contains(words), "{shape}: {e}");
        assert!(allocated.unwrap().peak_bytes < 1 << 20, "{shape}");
    }
    // A 100-byte PNG whose header declares 100 000 × 100 000 pixels.
    let png_dir = dir.path().join("images");
    std::fs::create_dir(&png_dir).unwrap();
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let chunk = |png: &mut Vec<u8>, kind: &[u8], data: &[u8]| {
        png.extend((data.len() as u32).to_be_bytes());
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        png.extend(kind);
        png.extend(data);
        png.extend(crc.sum().to_be_bytes());
    };
    let mut ihdr = 100_000u32.to_be_bytes().to_vec();
    ihdr.extend(100_000u32.to_be_bytes());
    ihdr.extend([8, 0, 0, 0, 0]);
    chunk(&mut png, b"IHDR", &ihdr);
    chunk(&mut png, b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]);
    chunk(&mut png, b"IEND", &[]);
    std::fs::write(png_dir.join("a.png"), &png).unwrap();
    let prep = qbench::data::ImagePrep {
        channels: 1,
        resize: qbench::data::Resize::None,
        crop: None,
        scale: 1.0 / 255.0,
        mean: vec![0.0],
        std: vec![1.0],
        channels_last: false,
    };
    let (result, allocated) = qbench::measure::alloc::measure(|| qbench::data::load_images("t", &png_dir, &prep, None));
    let e = result.unwrap_err().to_string();
    assert!(e.contains("beyond qbench's limits"), "{e}");
    assert!(allocated.unwrap().peak_bytes < 1 << 20);
    // A GGUF whose tensor dimensions multiply past 2^64 (to 0 elements, unchecked) is refused
    // before any GGUF reader allocates.
    let mut gguf = b"GGUF".to_vec();
    gguf.extend(3u32.to_le_bytes());
    gguf.extend(1u64.to_le_bytes());
    gguf.extend(0u64.to_le_bytes());
    gguf.extend(8u64.to_le_bytes());
    gguf.extend(b"w.weight");
    gguf.extend(3u32.to_le_bytes());
    for d in [1u64 << 32, 1 << 32, 8] {
        gguf.extend(d.to_le_bytes());
    }
    gguf.extend(0u32.to_le_bytes());
    gguf.extend(0u64.to_le_bytes());
    gguf.resize(128, 0);
    let path = dir.path().join("m.gguf");
    std::fs::write(&path, &gguf).unwrap();
    let (result, allocated) = qbench::measure::alloc::measure(|| qbench::model::gguf_lm::GgufLm::load("m", &path));
    let e = result.err().unwrap().to_string();
    assert!(e.contains("multiply past 2^64"), "{e}");
    assert!(allocated.unwrap().peak_bytes < 1 << 20);
}

//! The corpus `.ptd` parses, matches what the reference wrote (named tensors and
//! segments), rewrites byte for byte, and `serialize` from its payload reproduces it.

#[path = "pte_support.rs"]
mod support;

use ptekit_format::flat_tensor::{
    self, decode_flat_tensor, pack_flat_tensor, FlatTensorConfig, FlatTensorFile, ReadOptions,
};
use ptekit_format::program::ScalarType;

#[test]
fn corpus_ptd_parses_and_rewrites_exactly() {
    for path in support::corpus_ptds() {
        let bytes = std::fs::read(&path).expect("read");
        assert!(flat_tensor::is_flat_tensor(&bytes));
        let file = FlatTensorFile::parse(&bytes, &ReadOptions::default()).expect("parse");
        let h = file.header();
        assert_eq!(h.flatbuffer_offset, 48);
        assert_eq!(h.segment_base_offset % 128, 0);
        // The flatbuffer alone re-packs to the file's bytes (minus the header block).
        let fb = pack_flat_tensor(file.flat_tensor()).expect("pack");
        assert_eq!(fb.len() as u64, h.flatbuffer_size);
        assert_eq!(&fb[4..8], &bytes[4..8]);
        assert_eq!(&fb[8..], &bytes[56..48 + fb.len()]);
        let out = flat_tensor::rewrite(&bytes, &ReadOptions::default()).expect("rewrite");
        assert!(out == bytes, "{} rewrite differs", path.display());
        // The reference's deserialize + serialize with the default config.
        let again = flat_tensor::relayout(&file, &FlatTensorConfig::default()).expect("relayout");
        assert!(again == bytes, "{} relayout differs", path.display());
        // decode_flat_tensor on the whole file gives the same model.
        assert_eq!(
            &decode_flat_tensor(&bytes, &Default::default()).expect("decode"),
            file.flat_tensor()
        );
    }
}

#[test]
fn corpus_ptd_content() {
    let bytes =
        std::fs::read(support::corpus_dir().join("external._default_external_constant.ptd"))
            .expect("read");
    let file = FlatTensorFile::parse(&bytes, &ReadOptions::default()).expect("parse");
    let ft = file.flat_tensor();
    let keys: Vec<&str> = ft
        .named_data
        .as_deref()
        .unwrap()
        .iter()
        .map(|n| n.key.as_deref().unwrap())
        .collect();
    assert_eq!(keys, ["l1.weight", "l1.bias", "l2.weight", "l2.bias"]);
    let (n, data) = file.named("l1.weight").expect("l1.weight");
    let layout = n.tensor_layout.as_ref().expect("layout");
    assert_eq!(layout.scalar_type, ScalarType::FLOAT);
    assert_eq!(layout.sizes.as_deref(), Some(&[128, 64][..]));
    assert_eq!(data.len(), 128 * 64 * 4);
    let s = flat_tensor::summary(&file);
    assert_eq!(s.named_tensors.len(), 4);
    assert_eq!(s.segments.len(), 4);
    let text = flat_tensor::render_summary(&s);
    assert!(text.contains("l2.bias: FLOAT [8]"), "{text}");
}

//! `rewrite` of a valid program that the reference's packer did not lay out: the exact
//! rewrite is impossible, so the canonical layout is written; it holds the same program
//! and data and verifies.

#[path = "pte_support.rs"]
mod support;

use ptekit_format::pte::{
    plan_exact, plan_rewrite, restore, PteError, PteFile, ReadOptions, RewriteLayout,
};

/// A copy of `bytes` with one byte of flatbuffer padding set (another writer's padding):
/// the first program-region position whose change leaves the decoded model as it was.
fn with_other_padding(bytes: &[u8]) -> Vec<u8> {
    let read = ReadOptions::default();
    let file = PteFile::parse(bytes, &read).expect("parses");
    let model = restore(&file).expect("restores");
    let end = file.program_size() as usize;
    (56..end)
        .filter(|&p| bytes[p] == 0)
        .find_map(|p| {
            let mut other = bytes.to_vec();
            other[p] = 0x5a;
            let f = PteFile::parse(&other, &read).ok()?;
            (f.verify().is_ok() && restore(&f).ok()? == model).then_some(other)
        })
        .expect("a padding byte")
}

#[test]
fn a_file_laid_out_by_another_writer_is_rewritten_canonically() {
    let read = ReadOptions::default();
    for name in ["mlp.pte", "mlp_xnnpack.pte", "kv_init.pte"] {
        let original = support::corpus_file(name);
        let other = with_other_padding(&original);
        let file = PteFile::parse(&other, &read).expect("parses");
        assert!(
            matches!(plan_exact(&file), Err(PteError::NotReproducible { .. })),
            "{name}"
        );
        let (plan, layout) = plan_rewrite(&file).expect("plans");
        assert!(
            matches!(layout, RewriteLayout::Canonical { .. }),
            "{name}: {layout:?}"
        );
        let out = plan.to_vec().expect("writes");
        // The same program, constants, delegate data and named data.
        let reference =
            restore(&PteFile::parse(&original, &read).expect("parses")).expect("restores");
        let ours = PteFile::parse(&out, &read).expect("output parses");
        assert!(
            restore(&ours).expect("restores") == reference,
            "{name}: model changed"
        );
        let again = PteFile::parse(&out, &read).expect("output parses");
        again.verify().expect("output verifies");
        // And the reference's file is kept byte for byte.
        let file = PteFile::parse(&original, &read).expect("parses");
        let (plan, layout) = plan_rewrite(&file).expect("plans");
        assert_eq!(layout, RewriteLayout::Exact);
        assert!(plan.to_vec().expect("writes") == original);
    }
}

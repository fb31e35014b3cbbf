//! The properties the writer, `.npz` and Python-reader fuzz targets check, shared with
//! the replay of their regression inputs (`crates/ptekit-format/tests/fuzz_regressions.rs`
//! includes this file), so a committed input is checked exactly as the fuzzer checked it.
//! Each function takes arbitrary bytes, panics when a property fails, and returns whether
//! the input was read at all.

use ptekit_format::flat_tensor::{self, FlatTensorConfig, FlatTensorFile};
use ptekit_format::inspect::{inspect_with, InspectOptions};
use ptekit_format::npz;
use ptekit_format::pte::{
    plan, plan_rewrite, relayout, restore, PlannedPte, PteFile, ReadOptions, SerializeOptions,
};
use ptekit_format::tensors::stored_tensors;

/// Plans no larger than this are written (memory stays bounded for tiny inputs that
/// claim huge layouts).
fn bound(data: &[u8]) -> u64 {
    (data.len() as u64)
        .saturating_mul(4)
        .saturating_add(1 << 16)
}

/// Writes a plan both ways (assembled and streamed) and checks they agree.
fn write(plan: &PlannedPte<'_>) -> Vec<u8> {
    let bytes = plan.to_vec().expect("a plan writes");
    let mut streamed = Vec::new();
    plan.write_to(&mut streamed).expect("a plan streams");
    assert!(
        streamed == bytes,
        "streamed bytes differ from the assembled ones"
    );
    bytes
}

/// The `.pte` writer paths: the rewrite without options (exact or canonical), relayouts
/// with the default and with other alignments (what `--segment-alignment`,
/// `--tensor-alignment`, `--delegate-alignment` and `--upgrade` run). Each output reads
/// back, holds no broken reference when the input held none, restores, and a relayout
/// of a relayout is the same file.
pub fn write_pte(data: &[u8]) -> bool {
    let read = ReadOptions::default();
    let Ok(file) = PteFile::parse(data, &read) else {
        return false;
    };
    let consistent = file.verify_consistency().is_ok();
    let check = |bytes: &[u8], what: &str| -> Option<()> {
        let again = PteFile::parse(bytes, &read)
            .unwrap_or_else(|e| panic!("{what}: our output does not parse: {e}"));
        if consistent {
            if let Err(e) = again.verify_consistency() {
                panic!("{what}: a consistent input gave an output verify refuses: {e}");
            }
        }
        restore(&again).ok().map(|_| ())
    };
    if let Ok((plan, _layout)) = plan_rewrite(&file) {
        if plan.len() <= bound(data) {
            check(&write(&plan), "rewrite");
        }
    }
    let other = SerializeOptions {
        segment_alignment: 4096,
        constant_tensor_alignment: Some(64),
        delegate_alignment: Some(256),
        ..SerializeOptions::default()
    };
    for options in [SerializeOptions::default(), other] {
        let Ok(plan) = relayout(&file, &options) else {
            continue;
        };
        if plan.len() > bound(data) {
            continue;
        }
        let bytes = write(&plan);
        if check(&bytes, "relayout").is_none() {
            continue;
        }
        let again = PteFile::parse(&bytes, &read).expect("checked above");
        let twice = relayout(&again, &options).expect("a relayout of our output plans");
        assert!(write(&twice) == bytes, "relayout is not idempotent");
    }
    true
}

/// The `.npz` reader (what `ptekit bundle make` reads): whatever it accepts, the writer
/// writes and the reader reads back the same arrays.
pub fn read_npz(data: &[u8]) -> bool {
    let Ok(arrays) = npz::read_npz_with_limit(data, 1 << 24) else {
        return false;
    };
    if let Ok(bytes) = npz::write_npz(&arrays) {
        let again = npz::read_npz(&bytes).expect("our .npz reads back");
        assert!(again == arrays, "the .npz round trip changed the arrays");
    }
    true
}

/// Every named entry of `after` is the one of `before` at the same position: same key,
/// same tensor layout, same bytes.
fn same_named_data(before: &flat_tensor::DataPayload, after: &flat_tensor::DataPayload) {
    assert_eq!(
        before.named_data.len(),
        after.named_data.len(),
        "named data count changed"
    );
    for (b, a) in before.named_data.iter().zip(&after.named_data) {
        assert_eq!(b.key, a.key, "named data key changed");
        assert!(
            b.tensor_layout == a.tensor_layout,
            "tensor layout of {:?} changed",
            b.key
        );
        let (bb, ab) = (
            before.buffers.get(b.buffer_index),
            after.buffers.get(a.buffer_index),
        );
        assert!(bb == ab, "bytes of {:?} changed", b.key);
    }
}

/// What the Python readers run on their bytes: `ptekit.inspect`, `ptekit.safe_open`,
/// `deserialize_pte_binary` (parse + restore, then `serialize_pte_binary` of the result
/// reads back) and `FlatTensorSerializer.deserialize` (its payload serializes, reads
/// back with the same named data, and is then a fixed point of read + serialize).
pub fn python_readers(data: &[u8]) -> bool {
    let mut read = false;
    if let Ok(inspection) = inspect_with(data, &InspectOptions::default()) {
        let _ = inspection.to_json().to_string();
        read = true;
    }
    let _ = stored_tensors(data);
    if let Ok(file) = PteFile::parse(data, &ReadOptions::default()) {
        if let Ok(model) = restore(&file) {
            if let Ok(planned) = plan(&model, &SerializeOptions::default()) {
                if planned.len() <= bound(data) {
                    let bytes = write(&planned);
                    PteFile::parse(&bytes, &ReadOptions::default())
                        .expect("serialize of a deserialized program reads back");
                }
            }
        }
    }
    if let Ok(file) = FlatTensorFile::parse(data, &flat_tensor::ReadOptions::default()) {
        let payload = file.to_payload();
        let total: u64 = file.segments().iter().map(|s| s.size).sum();
        if total < (1 << 20) {
            if let Ok(bytes) = flat_tensor::serialize(&payload, &FlatTensorConfig::default()) {
                let again = FlatTensorFile::parse(&bytes, &flat_tensor::ReadOptions::default())
                    .expect("our .ptd parses");
                let read_back = again.to_payload();
                same_named_data(&payload, &read_back);
                // Like the reference, serialization keeps only the buffers named data
                // refers to (in first-use order), so the payload read back can differ
                // from `payload` (unreferenced segments, another buffer order), but it
                // is a fixed point: serializing it again gives the same bytes.
                let twice = flat_tensor::serialize(&read_back, &FlatTensorConfig::default())
                    .expect("a payload read back from our .ptd serializes");
                assert!(
                    twice == bytes,
                    "the .ptd is not a fixed point of read + serialize"
                );
            }
        }
    }
    read
}

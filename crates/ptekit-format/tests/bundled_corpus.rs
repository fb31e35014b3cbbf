//! Every reference `.bpte` in the shared corpus decodes (zero-copy), its embedded program
//! parses in place and equals the corpus `.pte`, it re-packs to exactly its bytes, and
//! `bundled::make` from the `.pte` plus the decoded test values reproduces it.

#[path = "pte_support.rs"]
mod support;

use std::borrow::Cow;

use ptekit_flatbuffers::Limits;
use ptekit_format::bundled::{
    self, decode_bundled, pack_bundled, BundledFile, MethodTestCaseInput, MethodTestSuiteInput,
    TestValue, ValueUnion,
};
use ptekit_format::npz::{DType, NpyArray};
use ptekit_format::pte::ReadOptions;

fn inside(outer: &[u8], inner: &[u8]) -> bool {
    let (o, i) = (outer.as_ptr() as usize, inner.as_ptr() as usize);
    i >= o && i + inner.len() <= o + outer.len()
}

#[test]
fn corpus_bpte_round_trips_byte_for_byte() {
    let files = support::corpus_files("bpte");
    assert!(files.len() >= 3, "expected the .bpte files of the corpus");
    for path in files {
        let bytes = std::fs::read(&path).expect("read");
        assert!(bundled::is_bundled(&bytes));
        let bp = decode_bundled(&bytes, &Limits::default()).expect("decode");
        assert_eq!(bp.version, 2, "{}", path.display());
        // Zero copy: the program and every tensor's data borrow from the input.
        match &bp.program {
            Some(Cow::Borrowed(p)) => {
                assert!(inside(&bytes, p));
                let off = p.as_ptr() as usize - bytes.as_ptr() as usize;
                assert_eq!(off % 32, 0, "program aligned to 32");
            }
            other => panic!(
                "program not borrowed: {:?}",
                other.as_ref().map(|p| p.len())
            ),
        }
        let mut tensors = 0;
        for suite in bp.method_test_suites.as_deref().unwrap_or(&[]) {
            for case in suite.test_cases.as_deref().unwrap_or(&[]) {
                let values = case
                    .inputs
                    .iter()
                    .chain(case.expected_outputs.iter())
                    .flatten();
                for v in values {
                    if let Some(ValueUnion::Tensor(t)) = &v.val {
                        let Some(Cow::Borrowed(d)) = &t.data else {
                            panic!("tensor data not borrowed")
                        };
                        assert!(inside(&bytes, d));
                        assert_eq!((d.as_ptr() as usize - bytes.as_ptr() as usize) % 16, 0);
                        tensors += 1;
                    }
                }
            }
        }
        assert!(tensors >= 4);
        // The embedded program is the corpus .pte and parses in place.
        let pte = std::fs::read(path.with_extension("pte")).expect("pte beside");
        assert_eq!(bp.program_bytes(), Some(&pte[..]));
        let file = BundledFile::parse(&bytes, &Limits::default()).expect("file");
        let parsed = file
            .program_file(&ReadOptions::default())
            .expect("program parses");
        assert!(inside(&bytes, parsed.bytes()));
        assert!(parsed.program().execution_plan.is_some());
        // Byte-identical re-pack and rewrite.
        assert!(
            pack_bundled(&bp).expect("pack") == bytes,
            "{}",
            path.display()
        );
        // Packed around the program (left out, then streamed): the same bytes.
        let program = bp.program.as_deref().expect("program");
        let around = bundled::pack_bundled_around_program(&bp, program.len()).expect("pack around");
        assert_eq!(around.len(), bytes.len());
        assert_eq!(around.program_len(), program.len());
        let joined = [around.head(), program, around.tail()].concat();
        assert!(joined == bytes, "around program: {}", path.display());
        assert!(bundled::rewrite(&bytes, &Limits::default()).expect("rewrite") == bytes);
        assert_eq!(
            bundled::extract_program(&bytes, &ReadOptions::default()).expect("extract"),
            &pte[..]
        );
    }
}

fn dtype_of(t: &ptekit_format::bundled::Tensor<'_>) -> DType {
    DType::from_scalar_type(t.scalar_type).expect("known dtype")
}

fn array(t: &ptekit_format::bundled::Tensor<'_>) -> NpyArray {
    let shape = t
        .sizes
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .map(|&d| usize::try_from(d).expect("dim"))
        .collect();
    NpyArray::new(
        dtype_of(t),
        shape,
        t.data.as_deref().unwrap_or(&[]).to_vec(),
    )
    .expect("array")
}

#[test]
fn make_from_pte_and_values_reproduces_corpus_bpte() {
    for path in support::corpus_files("bpte") {
        let bytes = std::fs::read(&path).expect("read");
        let bp = decode_bundled(&bytes, &Limits::default()).expect("decode");
        let suites: Vec<MethodTestSuiteInput> = bp
            .method_test_suites
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .map(|s| MethodTestSuiteInput {
                method_name: s.method_name.clone().expect("name"),
                test_cases: s
                    .test_cases
                    .as_deref()
                    .unwrap_or(&[])
                    .iter()
                    .map(|c| MethodTestCaseInput {
                        inputs: c
                            .inputs
                            .iter()
                            .flatten()
                            .map(|v| match &v.val {
                                Some(ValueUnion::Tensor(t)) => TestValue::Array(array(t)),
                                Some(ValueUnion::Int(x)) => TestValue::Int(x.int_val),
                                Some(ValueUnion::Bool(x)) => TestValue::Bool(x.bool_val),
                                Some(ValueUnion::Double(x)) => TestValue::Double(x.double_val),
                                None => panic!("NONE value"),
                            })
                            .collect(),
                        expected_outputs: c
                            .expected_outputs
                            .iter()
                            .flatten()
                            .map(|v| match &v.val {
                                Some(ValueUnion::Tensor(t)) => array(t),
                                _ => panic!("non-tensor output"),
                            })
                            .collect(),
                    })
                    .collect(),
            })
            .collect();
        let pte = std::fs::read(path.with_extension("pte")).expect("pte");
        let made = bundled::make(&pte, &suites).expect("make");
        assert!(made == bytes, "{}: make differs", path.display());

        // A wrong dtype is refused like the reference's assertion.
        let mut bad = suites.clone();
        if let Some(TestValue::Array(a)) = bad[0].test_cases[0].inputs.get_mut(0) {
            a.dtype = DType::I32;
        }
        let err = bundled::make(&pte, &bad).expect_err("dtype mismatch");
        assert!(err.to_string().contains("inputs[0]"), "{err}");
        // An unknown method is refused.
        let mut bad = suites.clone();
        bad[0].method_name = "nope".into();
        assert!(bundled::make(&pte, &bad).is_err());
    }
}

#[test]
fn summary_lists_suites() {
    let path = support::corpus_dir().join("mlp.bpte");
    let bytes = std::fs::read(path).expect("read");
    let file = BundledFile::parse(&bytes, &Limits::default()).expect("parse");
    let s = bundled::summary(&file);
    assert_eq!(s.test_suites.len(), 1);
    assert_eq!(s.test_suites[0].method_name.as_deref(), Some("forward"));
    assert_eq!(s.test_suites[0].num_cases, 2);
    let v = &s.test_suites[0].cases[0].inputs[0];
    assert_eq!(
        (v.kind, v.dtype.as_deref(), v.shape.as_deref()),
        ("Tensor", Some("FLOAT"), Some(&[2, 16][..]))
    );
    assert_eq!(v.bytes, Some(128));
    let text = bundled::render_summary(&s);
    assert!(text.contains("forward: 2 cases"), "{text}");
    assert!(text.contains("Tensor FLOAT [2, 4] (32 bytes)"), "{text}");
}

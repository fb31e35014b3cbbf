//! Differential tests of flatc's JSON packing order against the real `flatc` 24.3.25
//! shipped with the reference (`executorch/data/bin/flatc`):
//!
//! 1. random JSON documents for the FlatTensor schema — keys in random order, optional
//!    keys missing or `null`, default and extreme values, empty vectors — are compiled by
//!    `flatc --binary` and built with `ptekit_flatbuffers::flatc_order::FlatcTable`
//!    following the JSON text; the bytes must be identical;
//! 2. random `FlatTensor` models in the reference's key order are packed by
//!    `pack_flat_tensor` and by flatc from `json.dumps`-style text; identical bytes.

#[path = "pte_support.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use ptekit_flatbuffers::flatc_order::FlatcTable;
use ptekit_flatbuffers::{Builder, UOffset};
use ptekit_format::flat_tensor::{
    pack_flat_tensor, DataSegment, FlatTensor, NamedData, TensorLayout,
};
use ptekit_format::program::ScalarType;
use support::XorShiftStar as Rng;

/// The reference's flatc binary and the directory holding `flat_tensor.fbs`.
fn flatc_and_schema(python: &Path) -> (PathBuf, PathBuf) {
    let out = Command::new(python)
        .args([
            "-c",
            "import os, importlib.resources as r, executorch.extension.flat_tensor.serialize as s; \
             print(r.files('executorch.data.bin').joinpath('flatc')); \
             print(os.path.dirname(s.__file__))",
        ])
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf8");
    let mut lines = text.lines();
    let flatc = PathBuf::from(lines.next().expect("flatc path"));
    let schema_dir = PathBuf::from(lines.next().expect("schema dir"));
    assert!(flatc.exists(), "flatc not found at {}", flatc.display());
    (flatc, schema_dir)
}

/// Compiles each JSON text with `flatc --binary`; returns the outputs in order.
fn flatc_compile(flatc: &Path, schema_dir: &Path, docs: &[String]) -> Vec<Vec<u8>> {
    let dir = tempfile::tempdir().expect("tempdir");
    for name in ["flat_tensor.fbs", "scalar_type.fbs"] {
        std::fs::copy(schema_dir.join(name), dir.path().join(name)).expect("copy schema");
    }
    let mut args = vec![
        "--binary".to_string(),
        "-o".to_string(),
        dir.path().join("out").display().to_string(),
        dir.path().join("flat_tensor.fbs").display().to_string(),
    ];
    for (i, d) in docs.iter().enumerate() {
        let p = dir.path().join(format!("doc{i}.json"));
        std::fs::write(&p, d).expect("write json");
        args.push(p.display().to_string());
    }
    let out = Command::new(flatc).args(&args).output().expect("run flatc");
    assert!(
        out.status.success(),
        "flatc failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (0..docs.len())
        .map(|i| {
            std::fs::read(dir.path().join("out").join(format!("doc{i}.ptd"))).expect("flatc output")
        })
        .collect()
}

// ------------------------------------------------------------------ random JSON

/// A small deterministic generator (xorshift64*), so failures reproduce.
/// A JSON value with its object keys in text order.
#[derive(Debug, Clone)]
enum J {
    Num(String),
    Str(String),
    Null,
    Arr(Vec<J>),
    Obj(Vec<(&'static str, J)>),
}

impl J {
    fn text(&self, out: &mut String) {
        match self {
            J::Num(n) => out.push_str(n),
            J::Str(s) => out.push_str(&serde_json::to_string(s).expect("string")),
            J::Null => out.push_str("null"),
            J::Arr(v) => {
                out.push('[');
                for (i, x) in v.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    x.text(out);
                }
                out.push(']');
            }
            J::Obj(fields) => {
                out.push('{');
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    out.push_str(&format!("\"{k}\": "));
                    v.text(out);
                }
                out.push('}');
            }
        }
    }
}

fn u64_value(r: &mut Rng) -> u64 {
    match r.below(5) {
        0 => 0,
        1 => r.below(256),
        2 => u64::MAX - r.below(3),
        3 => r.next() >> r.below(64),
        _ => r.below(1 << 20) * 128,
    }
}

/// Object with the given optional fields, in random order, some missing or `null`.
fn obj(fields: Vec<(&'static str, J)>, r: &mut Rng) -> J {
    let mut kept: Vec<(&'static str, J)> = fields
        .into_iter()
        .filter_map(|(k, v)| match r.below(10) {
            0 => None,
            1 if !matches!(v, J::Num(_)) => Some((k, J::Null)),
            _ => Some((k, v)),
        })
        .collect();
    r.shuffle(&mut kept);
    J::Obj(kept)
}

const SCALAR_TYPES: [i8; 10] = [0, 1, 2, 3, 4, 5, 6, 7, 11, 29];

fn random_layout(r: &mut Rng) -> J {
    let rank = r.below(5) as usize;
    let sizes = (0..rank)
        .map(|_| J::Num(((r.next() as i32) >> r.below(32)).to_string()))
        .collect();
    let dim_order = (0..r.below(5))
        .map(|_| J::Num(r.below(256).to_string()))
        .collect();
    let st = SCALAR_TYPES[r.below(SCALAR_TYPES.len() as u64) as usize];
    obj(
        vec![
            ("scalar_type", J::Num(st.to_string())),
            ("sizes", J::Arr(sizes)),
            ("dim_order", J::Arr(dim_order)),
        ],
        r,
    )
}

fn random_doc(r: &mut Rng) -> J {
    let segments = (0..r.below(5))
        .map(|_| {
            obj(
                vec![
                    ("offset", J::Num(u64_value(r).to_string())),
                    ("size", J::Num(u64_value(r).to_string())),
                ],
                r,
            )
        })
        .collect();
    let named = (0..r.below(5))
        .map(|i| {
            let key = match r.below(4) {
                0 => String::new(),
                1 => format!("w{i}"),
                2 => "é\u{1F600}\"quoted\"".to_string(),
                _ => format!("layers.{}.weight", r.below(1000)),
            };
            let layout = random_layout(r);
            obj(
                vec![
                    ("key", J::Str(key)),
                    ("segment_index", J::Num(r.below(4).to_string())),
                    ("tensor_layout", layout),
                ],
                r,
            )
        })
        .collect();
    let version = if r.chance(50) { 0 } else { r.below(1 << 32) };
    obj(
        vec![
            ("version", J::Num(version.to_string())),
            ("segments", J::Arr(segments)),
            ("named_data", J::Arr(named)),
        ],
        r,
    )
}

// ------------------------------------------------------------ flatc-order builder

fn num<T: std::str::FromStr>(j: &J) -> T
where
    T::Err: std::fmt::Debug,
{
    match j {
        J::Num(n) => n.parse().expect("number"),
        other => panic!("expected a number, got {other:?}"),
    }
}

/// Builds a table of the FlatTensor schema from its JSON object, following flatc: the
/// children are created in text order, the fields recorded and added by `FlatcTable`.
fn build(b: &mut Builder, kind: &str, j: &J) -> UOffset {
    let J::Obj(fields) = j else {
        panic!("object expected")
    };
    let (num_fields, slots): (usize, &[(&str, &str)]) = match kind {
        "FlatTensor" => (
            3,
            &[
                ("version", "u32"),
                ("segments", "[DataSegment]"),
                ("named_data", "[NamedData]"),
            ],
        ),
        "DataSegment" => (2, &[("offset", "u64"), ("size", "u64")]),
        "NamedData" => (
            3,
            &[
                ("key", "string"),
                ("segment_index", "u32"),
                ("tensor_layout", "TensorLayout"),
            ],
        ),
        "TensorLayout" => (
            3,
            &[
                ("scalar_type", "i8"),
                ("sizes", "[i32]"),
                ("dim_order", "[u8]"),
            ],
        ),
        _ => unreachable!(),
    };
    let mut t = FlatcTable::new(num_fields);
    for (key, value) in fields {
        let slot = slots.iter().position(|(k, _)| k == key).expect("known key");
        let ty = slots[slot].1;
        if matches!(value, J::Null) {
            continue;
        }
        match ty {
            "u32" => t.add_u32(slot, num(value), 0),
            "u64" => t.add_u64(slot, num(value), 0),
            "i8" => t.add_i8(slot, num(value), 0),
            "string" => {
                let J::Str(s) = value else { panic!() };
                let off = b.create_string(s);
                t.add_offset(slot, off);
            }
            "[i32]" | "[u8]" => {
                let J::Arr(items) = value else { panic!() };
                let off = if ty == "[i32]" {
                    b.create_scalar_vector(&items.iter().map(num::<i32>).collect::<Vec<_>>())
                } else {
                    b.create_scalar_vector(&items.iter().map(num::<u8>).collect::<Vec<_>>())
                };
                t.add_offset(slot, off);
            }
            "[DataSegment]" | "[NamedData]" => {
                let J::Arr(items) = value else { panic!() };
                let elem = &ty[1..ty.len() - 1];
                let offs: Vec<UOffset> = items.iter().map(|x| build(b, elem, x)).collect();
                let off = b.create_offset_vector(&offs);
                t.add_offset(slot, off);
            }
            "TensorLayout" => {
                let off = build(b, "TensorLayout", value);
                t.add_offset(slot, off);
            }
            _ => unreachable!(),
        }
    }
    t.end(b)
}

#[test]
fn flatc_order_matches_flatc_on_random_json() {
    let Some(python) = support::reference_python("flatc_order_matches_flatc_on_random_json") else {
        return;
    };
    let (flatc, schema_dir) = flatc_and_schema(&python);
    let mut r = Rng(0x5EED_F1A7_C0DE_2024);
    let docs: Vec<J> = (0..300).map(|_| random_doc(&mut r)).collect();
    let texts: Vec<String> = docs
        .iter()
        .map(|d| {
            let mut s = String::new();
            d.text(&mut s);
            s
        })
        .collect();
    let expected = flatc_compile(&flatc, &schema_dir, &texts);
    for ((doc, text), want) in docs.iter().zip(&texts).zip(&expected) {
        let mut b = Builder::new();
        let root = build(&mut b, "FlatTensor", doc);
        b.finish(root, Some(b"FT01"));
        assert!(
            b.finished_data() == &want[..],
            "bytes differ from flatc for JSON:\n{text}"
        );
    }
}

fn random_model(r: &mut Rng) -> FlatTensor {
    let opt = |r: &mut Rng| !r.chance(10);
    FlatTensor {
        version: if r.chance(50) {
            0
        } else {
            r.below(1000) as u32
        },
        segments: opt(r).then(|| {
            (0..r.below(6))
                .map(|_| DataSegment {
                    offset: u64_value(r),
                    size: u64_value(r),
                })
                .collect()
        }),
        named_data: opt(r).then(|| {
            (0..r.below(6))
                .map(|i| NamedData {
                    key: opt(r).then(|| format!("k{i}.{}", r.below(100))),
                    segment_index: r.below(5) as u32,
                    tensor_layout: opt(r).then(|| TensorLayout {
                        scalar_type: ScalarType(SCALAR_TYPES[r.below(10) as usize]),
                        sizes: opt(r)
                            .then(|| (0..r.below(4)).map(|_| r.below(4096) as i32).collect()),
                        dim_order: opt(r)
                            .then(|| (0..r.below(4)).map(|_| r.below(4) as u8).collect()),
                    }),
                })
                .collect()
        }),
    }
}

/// The reference's `json.dumps(flat_tensor, cls=_DataclassEncoder)` text.
fn reference_json(ft: &FlatTensor) -> String {
    use serde_json::{json, Value};
    let opt_arr = |v: Option<Value>| v.unwrap_or(Value::Null);
    let v = json!({
        "version": ft.version,
        "segments": opt_arr(ft.segments.as_ref().map(|s| Value::Array(s.iter().map(|s| json!({"offset": s.offset, "size": s.size})).collect()))),
        "named_data": opt_arr(ft.named_data.as_ref().map(|n| Value::Array(n.iter().map(|n| json!({
            "key": n.key,
            "segment_index": n.segment_index,
            "tensor_layout": n.tensor_layout.as_ref().map(|l| json!({
                "scalar_type": l.scalar_type.0,
                "sizes": l.sizes,
                "dim_order": l.dim_order,
            })),
        })).collect()))),
    });
    // serde_json (without preserve_order) sorts keys; re-emit in the dataclass order.
    fn emit(v: &Value, order: &[&str], out: &mut String) {
        match v {
            Value::Object(m) => {
                out.push('{');
                let mut first = true;
                for k in order.iter().filter(|k| m.contains_key(**k)) {
                    if !first {
                        out.push_str(", ");
                    }
                    first = false;
                    out.push_str(&format!("\"{k}\": "));
                    emit(&m[*k], order, out);
                }
                out.push('}');
            }
            Value::Array(a) => {
                out.push('[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    emit(x, order, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let order = [
        "version",
        "segments",
        "named_data",
        "offset",
        "size",
        "key",
        "segment_index",
        "tensor_layout",
        "scalar_type",
        "sizes",
        "dim_order",
    ];
    let mut s = String::new();
    emit(&v, &order, &mut s);
    s
}

#[test]
fn pack_flat_tensor_matches_flatc_on_random_models() {
    let Some(python) = support::reference_python("pack_flat_tensor_matches_flatc_on_random_models")
    else {
        return;
    };
    let (flatc, schema_dir) = flatc_and_schema(&python);
    let mut r = Rng(0xF1A7_7E45_0000_0001);
    let models: Vec<FlatTensor> = (0..200).map(|_| random_model(&mut r)).collect();
    let texts: Vec<String> = models.iter().map(reference_json).collect();
    let expected = flatc_compile(&flatc, &schema_dir, &texts);
    for ((m, text), want) in models.iter().zip(&texts).zip(&expected) {
        let ours = pack_flat_tensor(m).expect("pack");
        assert!(
            ours == *want,
            "pack_flat_tensor differs from flatc for:\n{text}"
        );
    }
}

//! Differential test against the reference serializer: random programs are packed by
//! `pack_program` and by executorch's `_program_to_flatbuffer` (through
//! `tests/program_reference.py`, one Python process per batch), and the bytes must be
//! identical; the reference's `_flatbuffer_to_program` view of our bytes must equal our
//! own decoding of them; and our decoding must give back the program we packed.

#[path = "pte_support.rs"]
mod support;

use support::hex;

use std::borrow::Cow;
use std::path::PathBuf;
use std::process::Command;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use ptekit_flatbuffers::Limits;
use ptekit_format::program::*;
use serde_json::{json, Map, Value};

// ------------------------------------------------------------------ reference lookup

/// The interpreter, or `None` after printing `skipped:` (panics instead when
/// `PTEKIT_REQUIRE_REFERENCE=1`).
struct RefResult {
    bytes: Vec<u8>,
    view: Value,
}

/// Runs the helper on a batch of (program JSON, tensor alignment, delegate alignment,
/// our bytes).
fn run_reference(python: &PathBuf, cases: &[(Value, usize, usize, Vec<u8>)]) -> Vec<RefResult> {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("cases.json");
    let output = dir.path().join("results.json");
    let payload: Vec<Value> = cases
        .iter()
        .map(|(p, ta, da, ours)| {
            json!({"program": p, "tensor_alignment": ta, "delegate_alignment": da,
                   "ours": hex(ours)})
        })
        .collect();
    std::fs::write(&input, serde_json::to_vec(&payload).unwrap()).unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/program_reference.py");
    let out = Command::new(python)
        .arg(&script)
        .arg(&input)
        .arg(&output)
        .current_dir(dir.path())
        .output()
        .expect("failed to start the reference Python");
    assert!(
        out.status.success(),
        "reference helper failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<Value> = serde_json::from_slice(&std::fs::read(&output).unwrap()).unwrap();
    assert_eq!(results.len(), cases.len());
    results
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            if let Some(e) = r["error"].as_str() {
                panic!("reference failed on case {i}: {e}\nprogram: {}", cases[i].0);
            }
            RefResult {
                bytes: unhex(r["bytes"].as_str().unwrap()),
                view: r["view"].clone(),
            }
        })
        .collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

// ------------------------------------------------------------------ program JSON
// Mirrors tests/program_reference.py: null for absent, "kind" on union members,
// hex for bytes and for doubles (their little-endian bits), integers for enums.

fn dbl(x: f64) -> Value {
    Value::String(hex(&x.to_le_bytes()))
}

fn opt<T>(v: &Option<T>, f: impl FnOnce(&T) -> Value) -> Value {
    v.as_ref().map_or(Value::Null, f)
}

fn list<T>(v: &Option<Vec<T>>, f: impl Fn(&T) -> Value) -> Value {
    opt(v, |v| Value::Array(v.iter().map(f).collect()))
}

fn ints<T: Copy + Into<Value>>(v: &Option<Vec<T>>) -> Value {
    list(v, |x| (*x).into())
}

fn s(v: &Option<String>) -> Value {
    opt(v, |s| Value::String(s.clone()))
}

fn bytes(v: &Option<Cow<'_, [u8]>>) -> Value {
    opt(v, |b| Value::String(hex(b)))
}

fn obj(pairs: Vec<(&str, Value)>) -> Value {
    let mut m = Map::new();
    for (k, v) in pairs {
        m.insert(k.to_string(), v);
    }
    Value::Object(m)
}

fn program_json(p: &Program<'_>) -> Value {
    obj(vec![
        ("version", p.version.into()),
        ("execution_plan", list(&p.execution_plan, plan_json)),
        (
            "constant_buffer",
            list(&p.constant_buffer, |b| {
                obj(vec![("storage", bytes(&b.storage))])
            }),
        ),
        (
            "backend_delegate_data",
            list(&p.backend_delegate_data, |d| {
                obj(vec![("data", bytes(&d.data))])
            }),
        ),
        (
            "segments",
            list(&p.segments, |s| {
                obj(vec![("offset", s.offset.into()), ("size", s.size.into())])
            }),
        ),
        (
            "constant_segment",
            opt(&p.constant_segment, subsegment_json),
        ),
        (
            "mutable_data_segments",
            list(&p.mutable_data_segments, subsegment_json),
        ),
        (
            "named_data",
            list(&p.named_data, |n| {
                obj(vec![
                    ("key", s(&n.key)),
                    ("segment_index", n.segment_index.into()),
                ])
            }),
        ),
    ])
}

fn subsegment_json(x: &SubsegmentOffsets) -> Value {
    obj(vec![
        ("segment_index", x.segment_index.into()),
        ("offsets", ints(&x.offsets)),
    ])
}

fn plan_json(e: &ExecutionPlan<'_>) -> Value {
    obj(vec![
        ("name", s(&e.name)),
        (
            "container_meta_type",
            opt(&e.container_meta_type, |c| {
                obj(vec![
                    ("encoded_inp_str", s(&c.encoded_inp_str)),
                    ("encoded_out_str", s(&c.encoded_out_str)),
                ])
            }),
        ),
        (
            "values",
            list(&e.values, |v| obj(vec![("val", opt(&v.val, kernel_json))])),
        ),
        ("inputs", ints(&e.inputs)),
        ("outputs", ints(&e.outputs)),
        ("chains", list(&e.chains, chain_json)),
        (
            "operators",
            list(&e.operators, |o| {
                obj(vec![("name", s(&o.name)), ("overload", s(&o.overload))])
            }),
        ),
        ("delegates", list(&e.delegates, delegate_json)),
        ("non_const_buffer_sizes", ints(&e.non_const_buffer_sizes)),
        (
            "non_const_buffer_device",
            list(&e.non_const_buffer_device, |d| {
                obj(vec![
                    ("buffer_idx", d.buffer_idx.into()),
                    ("device_type", d.device_type.0.into()),
                    ("device_index", d.device_index.into()),
                ])
            }),
        ),
    ])
}

fn kernel_json(k: &KernelTypes) -> Value {
    let mut v = match k {
        KernelTypes::Null(_) => obj(vec![]),
        KernelTypes::Int(i) => obj(vec![("int_val", i.int_val.into())]),
        KernelTypes::Bool(b) => obj(vec![("bool_val", b.bool_val.into())]),
        KernelTypes::Double(d) => obj(vec![("double_val", dbl(d.double_val))]),
        KernelTypes::Tensor(t) => tensor_json(t),
        KernelTypes::String(x) => obj(vec![("string_val", s(&x.string_val))]),
        KernelTypes::IntList(l) => obj(vec![("items", ints(&l.items))]),
        KernelTypes::DoubleList(l) => obj(vec![("items", list(&l.items, |x| dbl(*x)))]),
        KernelTypes::BoolList(l) => obj(vec![("items", ints(&l.items))]),
        KernelTypes::TensorList(l) => obj(vec![("items", ints(&l.items))]),
        KernelTypes::OptionalTensorList(l) => obj(vec![("items", ints(&l.items))]),
    };
    v.as_object_mut()
        .unwrap()
        .insert("kind".into(), k.kind_name().into());
    v
}

fn tensor_json(t: &Tensor) -> Value {
    obj(vec![
        ("scalar_type", t.scalar_type.0.into()),
        ("storage_offset", t.storage_offset.into()),
        ("sizes", ints(&t.sizes)),
        ("dim_order", ints(&t.dim_order)),
        ("requires_grad", t.requires_grad.into()),
        ("layout", t.layout.into()),
        ("data_buffer_idx", t.data_buffer_idx.into()),
        (
            "allocation_info",
            opt(&t.allocation_info, |a| {
                obj(vec![
                    ("memory_id", a.memory_id.into()),
                    ("memory_offset_low", a.memory_offset_low.into()),
                    ("memory_offset_high", a.memory_offset_high.into()),
                ])
            }),
        ),
        ("shape_dynamism", t.shape_dynamism.0.into()),
        (
            "extra_tensor_info",
            opt(&t.extra_tensor_info, |x| {
                obj(vec![
                    (
                        "mutable_data_segments_idx",
                        x.mutable_data_segments_idx.into(),
                    ),
                    ("fully_qualified_name", s(&x.fully_qualified_name)),
                    ("location", x.location.0.into()),
                    ("device_type", x.device_type.0.into()),
                    ("device_index", x.device_index.into()),
                ])
            }),
        ),
    ])
}

fn chain_json(c: &Chain) -> Value {
    obj(vec![
        ("inputs", ints(&c.inputs)),
        ("outputs", ints(&c.outputs)),
        (
            "instructions",
            list(&c.instructions, |i| {
                obj(vec![("instr_args", opt(&i.instr_args, instr_json))])
            }),
        ),
        (
            "stacktrace",
            list(&c.stacktrace, |l| {
                obj(vec![(
                    "items",
                    list(&l.items, |f| {
                        obj(vec![
                            ("filename", s(&f.filename)),
                            ("lineno", f.lineno.into()),
                            ("name", s(&f.name)),
                            ("context", s(&f.context)),
                        ])
                    }),
                )])
            }),
        ),
    ])
}

fn instr_json(a: &InstructionArguments) -> Value {
    let mut v = match a {
        InstructionArguments::KernelCall(k) => obj(vec![
            ("op_index", k.op_index.into()),
            ("args", ints(&k.args)),
        ]),
        InstructionArguments::DelegateCall(d) => obj(vec![
            ("delegate_index", d.delegate_index.into()),
            ("args", ints(&d.args)),
        ]),
        InstructionArguments::MoveCall(m) => obj(vec![
            ("move_from", m.move_from.into()),
            ("move_to", m.move_to.into()),
        ]),
        InstructionArguments::JumpFalseCall(j) => obj(vec![
            ("cond_value_index", j.cond_value_index.into()),
            ("destination_instruction", j.destination_instruction.into()),
        ]),
        InstructionArguments::FreeCall(f) => obj(vec![("value_index", f.value_index.into())]),
    };
    v.as_object_mut()
        .unwrap()
        .insert("kind".into(), a.kind_name().into());
    v
}

fn delegate_json(d: &BackendDelegate<'_>) -> Value {
    obj(vec![
        ("id", s(&d.id)),
        (
            "processed",
            opt(&d.processed, |r| {
                obj(vec![
                    ("location", r.location.0.into()),
                    ("index", r.index.into()),
                ])
            }),
        ),
        (
            "compile_specs",
            list(&d.compile_specs, |c| {
                obj(vec![("key", s(&c.key)), ("value", bytes(&c.value))])
            }),
        ),
    ])
}

// ------------------------------------------------------------------ strategies

fn o<T: std::fmt::Debug>(s: impl Strategy<Value = T>) -> impl Strategy<Value = Option<T>> {
    prop::option::weighted(0.75, s)
}

fn v<T: std::fmt::Debug>(
    s: impl Strategy<Value = T>,
    max: usize,
) -> impl Strategy<Value = Option<Vec<T>>> {
    o(prop::collection::vec(s, 0..=max))
}

fn text() -> impl Strategy<Value = Option<String>> {
    o(prop_oneof![
        "[a-z_.:]{0,12}",
        "\\PC{0,6}",
        Just(String::new()),
    ])
}

fn raw_bytes(max: usize) -> impl Strategy<Value = Option<Cow<'static, [u8]>>> {
    o(prop::collection::vec(any::<u8>(), 0..=max).prop_map(Cow::Owned))
}

fn f64s() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => any::<f64>(),
        1 => any::<u64>().prop_map(f64::from_bits), // any NaN payload, subnormals...
        1 => prop::sample::select(vec![0.0, -0.0, f64::INFINITY, f64::NEG_INFINITY, f64::NAN, 1.5]),
    ]
}

fn small_i32() -> impl Strategy<Value = i32> {
    prop_oneof![3 => -2i32..40, 1 => any::<i32>()]
}

fn pick<T: Clone + std::fmt::Debug + 'static>(known: &'static [T]) -> impl Strategy<Value = T> {
    prop::sample::select(known.to_vec())
}

fn tensor() -> impl Strategy<Value = Tensor> {
    (
        (
            pick(ScalarType::KNOWN),
            small_i32(),
            v(small_i32(), 5),
            v(0u8..8, 5),
            any::<bool>(),
            prop_oneof![Just(0u32), any::<u32>()],
        ),
        (
            o((
                any::<u32>(),
                any::<u32>(),
                prop_oneof![Just(0u32), any::<u32>()],
            )
                .prop_map(|(memory_id, memory_offset_low, memory_offset_high)| {
                    AllocationDetails {
                        memory_id,
                        memory_offset_low,
                        memory_offset_high,
                    }
                })),
            prop_oneof![Just(0i8), any::<i8>()],
            pick(TensorShapeDynamism::KNOWN),
            o((
                prop_oneof![Just(0u64), any::<u64>()],
                text(),
                pick(TensorDataLocation::KNOWN),
                pick(DeviceType::KNOWN),
                any::<i8>(),
            )
                .prop_map(|(m, n, l, d, i)| ExtraTensorInfo {
                    mutable_data_segments_idx: m,
                    fully_qualified_name: n,
                    location: l,
                    device_type: d,
                    device_index: i,
                })),
        ),
    )
        .prop_map(
            |(
                (scalar_type, storage_offset, sizes, dim_order, requires_grad, data_buffer_idx),
                (allocation_info, layout, shape_dynamism, extra_tensor_info),
            )| Tensor {
                scalar_type,
                storage_offset,
                sizes,
                dim_order,
                requires_grad,
                data_buffer_idx,
                allocation_info,
                layout,
                shape_dynamism,
                extra_tensor_info,
            },
        )
}

fn kernel_types() -> impl Strategy<Value = KernelTypes> {
    prop_oneof![
        Just(KernelTypes::Null(Null)),
        prop_oneof![Just(0i64), any::<i64>()].prop_map(|int_val| KernelTypes::Int(Int { int_val })),
        any::<bool>().prop_map(|bool_val| KernelTypes::Bool(Bool { bool_val })),
        f64s().prop_map(|double_val| KernelTypes::Double(Double { double_val })),
        tensor().prop_map(KernelTypes::Tensor),
        text().prop_map(|string_val| KernelTypes::String(StringValue { string_val })),
        v(any::<i64>(), 6).prop_map(|items| KernelTypes::IntList(IntList { items })),
        v(f64s(), 4).prop_map(|items| KernelTypes::DoubleList(DoubleList { items })),
        v(any::<bool>(), 9).prop_map(|items| KernelTypes::BoolList(BoolList { items })),
        v(small_i32(), 4).prop_map(|items| KernelTypes::TensorList(TensorList { items })),
        v(small_i32(), 4)
            .prop_map(|items| KernelTypes::OptionalTensorList(OptionalTensorList { items })),
    ]
}

fn instruction() -> impl Strategy<Value = Instruction> {
    o(prop_oneof![
        (small_i32(), v(small_i32(), 5)).prop_map(|(op_index, args)| {
            InstructionArguments::KernelCall(KernelCall { op_index, args })
        }),
        (small_i32(), v(small_i32(), 5)).prop_map(|(delegate_index, args)| {
            InstructionArguments::DelegateCall(DelegateCall {
                delegate_index,
                args,
            })
        }),
        (small_i32(), small_i32()).prop_map(|(move_from, move_to)| {
            InstructionArguments::MoveCall(MoveCall { move_from, move_to })
        }),
        (small_i32(), small_i32()).prop_map(|(c, d)| {
            InstructionArguments::JumpFalseCall(JumpFalseCall {
                cond_value_index: c,
                destination_instruction: d,
            })
        }),
        small_i32()
            .prop_map(|value_index| InstructionArguments::FreeCall(FreeCall { value_index })),
    ])
    .prop_map(|instr_args| Instruction { instr_args })
}

fn chain() -> impl Strategy<Value = Chain> {
    (
        v(small_i32(), 3),
        v(small_i32(), 3),
        v(instruction(), 5),
        v(
            v((text(), small_i32(), text(), text()), 3).prop_map(|items| FrameList {
                items: items.map(|v| {
                    v.into_iter()
                        .map(|(filename, lineno, name, context)| Frame {
                            filename,
                            lineno,
                            name,
                            context,
                        })
                        .collect()
                }),
            }),
            3,
        ),
    )
        .prop_map(|(inputs, outputs, instructions, stacktrace)| Chain {
            inputs,
            outputs,
            instructions,
            stacktrace,
        })
}

fn delegate() -> impl Strategy<Value = BackendDelegate<'static>> {
    (
        text(),
        o((pick(DataLocation::KNOWN), 0u32..4)
            .prop_map(|(location, index)| BackendDelegateDataReference { location, index })),
        v(
            (text(), raw_bytes(12)).prop_map(|(key, value)| CompileSpec { key, value }),
            3,
        ),
    )
        .prop_map(|(id, processed, compile_specs)| BackendDelegate {
            id,
            processed,
            compile_specs,
        })
}

fn plan() -> impl Strategy<Value = ExecutionPlan<'static>> {
    (
        (
            text(),
            o(
                (text(), text()).prop_map(|(encoded_inp_str, encoded_out_str)| ContainerMetadata {
                    encoded_inp_str,
                    encoded_out_str,
                }),
            ),
            v(o(kernel_types()).prop_map(|val| EValue { val }), 12),
            v(small_i32(), 3),
            v(small_i32(), 3),
        ),
        (
            v(chain(), 2),
            v(
                (text(), text()).prop_map(|(name, overload)| Operator { name, overload }),
                3,
            ),
            v(delegate(), 2),
            v(prop_oneof![0i64..5000, any::<i64>()], 3),
            v(
                (small_i32(), pick(DeviceType::KNOWN), any::<i8>()).prop_map(
                    |(buffer_idx, device_type, device_index)| NonConstBufferDevice {
                        buffer_idx,
                        device_type,
                        device_index,
                    },
                ),
                2,
            ),
        ),
    )
        .prop_map(
            |(
                (name, container_meta_type, values, inputs, outputs),
                (chains, operators, delegates, non_const_buffer_sizes, non_const_buffer_device),
            )| ExecutionPlan {
                name,
                container_meta_type,
                values,
                inputs,
                outputs,
                chains,
                operators,
                delegates,
                non_const_buffer_sizes,
                non_const_buffer_device,
            },
        )
}

fn subsegment() -> impl Strategy<Value = SubsegmentOffsets> {
    (prop_oneof![Just(0u32), any::<u32>()], v(any::<u64>(), 4)).prop_map(
        |(segment_index, offsets)| SubsegmentOffsets {
            segment_index,
            offsets,
        },
    )
}

fn program() -> impl Strategy<Value = Program<'static>> {
    (
        prop_oneof![Just(0u32), any::<u32>()],
        v(plan(), 2),
        v(raw_bytes(40).prop_map(|storage| Buffer { storage }), 3),
        v(
            raw_bytes(40).prop_map(|data| BackendDelegateInlineData { data }),
            3,
        ),
        v(
            (any::<u64>(), any::<u64>()).prop_map(|(offset, size)| DataSegment { offset, size }),
            3,
        ),
        o(subsegment()),
        v(subsegment(), 2),
        v(
            (text(), any::<u32>())
                .prop_map(|(key, segment_index)| NamedData { key, segment_index }),
            3,
        ),
    )
        .prop_map(
            |(
                version,
                execution_plan,
                constant_buffer,
                backend_delegate_data,
                segments,
                constant_segment,
                mutable_data_segments,
                named_data,
            )| Program {
                version,
                execution_plan,
                constant_buffer,
                backend_delegate_data,
                segments,
                constant_segment,
                mutable_data_segments,
                named_data,
            },
        )
}

/// Python `x != 0.0` skips -0.0, so a packed `Double(-0.0)` decodes as `+0.0`.
fn normalize(mut j: Value) -> Value {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(m) => {
                if m.get("kind").and_then(Value::as_str) == Some("Double") {
                    if let Some(d) = m.get_mut("double_val") {
                        if d.as_str() == Some("0000000000000080") {
                            *d = dbl(0.0);
                        }
                    }
                }
                m.values_mut().for_each(walk);
            }
            Value::Array(a) => a.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut j);
    j
}

const ALIGNMENTS: [(usize, usize); 5] = [(16, 16), (32, 16), (16, 64), (64, 32), (1, 2)];

fn case_count() -> usize {
    std::env::var("PTEKIT_DIFF_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200)
}

#[test]
fn random_programs_match_reference() {
    let Some(python) = support::reference_python("random_programs_match_reference") else {
        return;
    };
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &[7u8; 32]),
    );
    let strategy = program();
    let limits = Limits::default();
    let mut programs = Vec::new();
    let mut cases = Vec::new();
    for i in 0..case_count() {
        let p = strategy.new_tree(&mut runner).unwrap().current();
        let (ta, da) = ALIGNMENTS[i % ALIGNMENTS.len()];
        let opts = PackOptions {
            tensor_alignment: ta,
            delegate_alignment: da,
        };
        let ours = pack_program(&p, &opts).unwrap();
        // Our own round trip first.
        let decoded = decode_program(&ours, &limits)
            .unwrap_or_else(|e| panic!("case {i}: our bytes do not decode: {e}"));
        assert_eq!(
            program_json(&decoded),
            normalize(program_json(&p)),
            "case {i}: decode(pack(p)) != p"
        );
        assert_eq!(
            pack_program(&decoded, &opts).unwrap(),
            ours,
            "case {i}: repack"
        );
        cases.push((program_json(&p), ta, da, ours));
        programs.push(p);
    }
    let results = run_reference(&python, &cases);
    let mut failures = Vec::new();
    for (i, (r, (pj, ta, da, ours))) in results.iter().zip(&cases).enumerate() {
        if &r.bytes != ours {
            let at = r.bytes.iter().zip(ours).position(|(a, b)| a != b);
            failures.push(format!(
                "case {i} (alignments {ta}/{da}): bytes differ at {at:?} (reference {} bytes, \
                 ours {} bytes)\nprogram: {pj}",
                r.bytes.len(),
                ours.len()
            ));
            continue;
        }
        let ours_view = program_json(&decode_program(ours, &limits).unwrap());
        if r.view != ours_view {
            failures.push(format!(
                "case {i}: the reference reads our bytes differently\nreference: {}\nours: {}",
                r.view, ours_view
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
    println!(
        "{} random programs match the reference byte for byte",
        programs.len()
    );
}

/// Corner cases a random generator rarely produces, checked against the reference too.
#[test]
fn corner_cases_match_reference() {
    let Some(python) = support::reference_python("corner_cases_match_reference") else {
        return;
    };
    let empty_plan = ExecutionPlan::default();
    let programs: Vec<Program<'static>> = vec![
        Program::default(),
        Program {
            execution_plan: Some(vec![]),
            constant_buffer: Some(vec![]),
            backend_delegate_data: Some(vec![]),
            segments: Some(vec![]),
            constant_segment: Some(SubsegmentOffsets::default()),
            mutable_data_segments: Some(vec![]),
            named_data: Some(vec![]),
            ..Program::default()
        },
        Program {
            execution_plan: Some(vec![empty_plan.clone(), empty_plan]),
            constant_buffer: Some(vec![
                Buffer {
                    storage: Some(Cow::Owned(vec![])),
                },
                Buffer { storage: None },
                Buffer {
                    storage: Some(Cow::Owned(vec![1; 33])),
                },
            ]),
            backend_delegate_data: Some(vec![BackendDelegateInlineData {
                data: Some(Cow::Owned(vec![9; 100])),
            }]),
            ..Program::default()
        },
        Program {
            execution_plan: Some(vec![ExecutionPlan {
                values: Some(vec![
                    EValue { val: None },
                    EValue {
                        val: Some(KernelTypes::Double(Double { double_val: -0.0 })),
                    },
                    EValue {
                        val: Some(KernelTypes::Double(Double {
                            double_val: f64::INFINITY,
                        })),
                    },
                    EValue {
                        val: Some(KernelTypes::BoolList(BoolList {
                            items: Some(vec![true, false, true]),
                        })),
                    },
                    EValue {
                        val: Some(KernelTypes::Tensor(Tensor::default())),
                    },
                ]),
                chains: Some(vec![Chain {
                    instructions: Some(vec![Instruction { instr_args: None }]),
                    ..Chain::default()
                }]),
                ..ExecutionPlan::default()
            }]),
            ..Program::default()
        },
    ];
    let limits = Limits::default();
    let mut cases = Vec::new();
    for p in &programs {
        for &(ta, da) in &ALIGNMENTS {
            let opts = PackOptions {
                tensor_alignment: ta,
                delegate_alignment: da,
            };
            let ours = pack_program(p, &opts).unwrap();
            decode_program(&ours, &limits).unwrap();
            cases.push((program_json(p), ta, da, ours));
        }
    }
    let results = run_reference(&python, &cases);
    for (i, (r, (pj, _, _, ours))) in results.iter().zip(&cases).enumerate() {
        assert_eq!(&r.bytes, ours, "corner case {i}: {pj}");
        let view = program_json(&decode_program(ours, &limits).unwrap());
        assert_eq!(r.view, view, "corner case {i}");
    }
}

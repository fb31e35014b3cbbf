//! Every `.pte` verify error names a byte offset (the table or field it is about), the
//! offsets [`locate`] computes point at the values the decoder read, and the checks the
//! runtime relies on that have no runtime test of their own (overlapping `.ptd`
//! segments).

#[path = "pte_support.rs"]
mod support;

use ptekit_format::flat_tensor::{self, FlatTensorFile};
use ptekit_format::program::{locate, KernelTypes};
use ptekit_format::pte::{PteFile, ReadOptions};

use support::{corpus_file, corpus_ptes, Rng};

/// What `ptekit verify` reports for a program (without its XNNPACK payloads): the parse
/// error, or the first semantic issue.
fn verify_error(bytes: &[u8]) -> Option<String> {
    match PteFile::parse(bytes, &ReadOptions::default()) {
        Err(e) => Some(e.to_string()),
        Ok(file) => file.verify().err().map(|e| e.to_string()),
    }
}

/// Whether an error message names a byte position.
fn has_offset(message: &str) -> bool {
    message.contains("offset 0x") || message.contains(" at byte ") || message.contains("file of ")
}

#[test]
fn every_verify_error_of_mutated_programs_names_an_offset() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut errors = 0;
    let mut semantic = 0;
    let mut without = Vec::new();
    for path in corpus_ptes() {
        let original = std::fs::read(&path).expect("corpus file");
        let program_end = PteFile::parse(&original, &ReadOptions::default())
            .map(|f| f.program_size() as usize)
            .expect("corpus file parses");
        for _ in 0..400 {
            let mut bytes = original.clone();
            let at = rng.below(program_end);
            bytes[at] = match rng.below(4) {
                0 => 0xff,
                1 => 0x80,
                2 => bytes[at] ^ 1,
                _ => bytes[at].wrapping_add(1),
            };
            let Some(message) = verify_error(&bytes) else {
                continue;
            };
            errors += 1;
            semantic += usize::from(message.contains("): "));
            if !has_offset(&message) {
                without.push(format!("{} @{at}: {message}", path.display()));
            }
        }
    }
    println!("{errors} errors, {semantic} with a located field");
    assert!(errors > 1000, "only {errors} mutants were refused");
    assert!(
        without.is_empty(),
        "{} errors without an offset:\n{}",
        without.len(),
        without.join("\n")
    );
}

fn read_i32(b: &[u8], at: u64) -> i32 {
    let at = at as usize;
    i32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn read_u64(b: &[u8], at: u64) -> u64 {
    let at = at as usize;
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// `locate` and the decoder agree on where every tensor's sizes, scalar type and data
/// index, every kernel call's operator index and every segment's offset and size are.
#[test]
fn located_fields_hold_the_decoded_values() {
    let mut checked = 0;
    for path in corpus_ptes() {
        let bytes = std::fs::read(&path).expect("corpus file");
        let file = PteFile::parse(&bytes, &ReadOptions::default()).expect("parses");
        let buf = file.program_bytes();
        let at = |p: &str| locate(buf, p).unwrap_or_else(|| panic!("{p}: not located"));
        for (p, plan) in file.program().execution_plan.iter().flatten().enumerate() {
            for (v, value) in plan.values.iter().flatten().enumerate() {
                let Some(KernelTypes::Tensor(t)) = &value.val else {
                    continue;
                };
                let base = format!("execution_plan[{p}].values[{v}].val.Tensor");
                for (d, &size) in t.sizes.iter().flatten().enumerate() {
                    assert_eq!(
                        read_i32(buf, at(&format!("{base}.sizes[{d}]"))),
                        size,
                        "{base}"
                    );
                    checked += 1;
                }
                if t.scalar_type.0 != 0 {
                    let pos = at(&format!("{base}.scalar_type")) as usize;
                    assert_eq!(buf[pos] as i8, t.scalar_type.0, "{base}");
                    checked += 1;
                }
                if t.data_buffer_idx != 0 {
                    let pos = at(&format!("{base}.data_buffer_idx"));
                    assert_eq!(read_i32(buf, pos) as u32, t.data_buffer_idx, "{base}");
                    checked += 1;
                }
            }
            for (c, chain) in plan.chains.iter().flatten().enumerate() {
                for (k, instr) in chain.instructions.iter().flatten().enumerate() {
                    let Some(ptekit_format::program::InstructionArguments::KernelCall(call)) =
                        &instr.instr_args
                    else {
                        continue;
                    };
                    let field = format!(
                        "execution_plan[{p}].chains[{c}].instructions[{k}].instr_args.KernelCall.op_index"
                    );
                    if call.op_index != 0 {
                        assert_eq!(read_i32(buf, at(&field)), call.op_index, "{field}");
                        checked += 1;
                    }
                }
            }
        }
        for (i, s) in file.program().segments.iter().flatten().enumerate() {
            if s.offset != 0 {
                assert_eq!(
                    read_u64(buf, at(&format!("segments[{i}].offset"))),
                    s.offset
                );
                checked += 1;
            }
            if s.size != 0 {
                assert_eq!(read_u64(buf, at(&format!("segments[{i}].size"))), s.size);
                checked += 1;
            }
        }
    }
    println!("{checked} located fields checked");
    assert!(checked > 1000);
}

/// Where `segments[index].offset` is stored in a `.ptd`, found by probing: the 8-aligned
/// position whose change shows up in that decoded field.
fn ptd_segment_offset_position(bytes: &[u8], index: usize) -> usize {
    let options = flat_tensor::ReadOptions::default();
    let end = FlatTensorFile::parse(bytes, &options)
        .expect("parses")
        .header()
        .flatbuffer_end()
        .unwrap() as usize;
    let original = flat_tensor::decode_flat_tensor(&bytes[..end], &Default::default()).unwrap();
    let mut wanted = original.clone();
    wanted.segments.as_mut().unwrap()[index].offset ^= 0x08;
    (0..end)
        .step_by(8)
        .find(|&pos| {
            let mut probe = bytes[..end].to_vec();
            probe[pos] ^= 0x08;
            flat_tensor::decode_flat_tensor(&probe, &Default::default())
                .is_ok_and(|ft| ft == wanted)
        })
        .expect("segment offset found")
}

#[test]
fn overlapping_ptd_segments_are_refused() {
    let bytes = corpus_file("external._default_external_constant.ptd");
    let options = flat_tensor::ReadOptions::default();
    let file = FlatTensorFile::parse(&bytes, &options).expect("parses");
    let first = file.segments()[0];
    assert!(file.segments().len() > 1 && first.size > 8);
    // Move segments[1] to start inside segments[0].
    let pos = ptd_segment_offset_position(&bytes, 1);
    let mut mutant = bytes.clone();
    mutant[pos..pos + 8].copy_from_slice(&(first.offset + 8).to_le_bytes());
    let err = FlatTensorFile::parse(&mutant, &options).expect_err("overlap refused");
    let message = err.to_string();
    assert!(
        message.contains("segments[1]") && message.contains("overlap segments[0]"),
        "{message}"
    );
    assert!(message.contains("file offset 0x"), "{message}");
}

#[test]
fn verify_refuses_ptd_layouts_the_runtime_cannot_use() {
    let bytes = corpus_file("external._default_external_constant.ptd");
    let options = flat_tensor::ReadOptions::default();
    let file = FlatTensorFile::parse(&bytes, &options).expect("parses");
    flat_tensor::verify(&file).expect("the reference's file verifies");
    let mut ft = file.flat_tensor().clone();
    let layout = ft.named_data.as_mut().unwrap()[0]
        .tensor_layout
        .as_mut()
        .unwrap();
    layout.scalar_type = ptekit_format::program::ScalarType(99);
    let with = |ft: &flat_tensor::FlatTensor| {
        let mut payload = file.to_payload();
        for (entry, named) in payload
            .named_data
            .iter_mut()
            .zip(ft.named_data.iter().flatten())
        {
            entry.tensor_layout = named.tensor_layout.clone();
        }
        flat_tensor::serialize(&payload, &flat_tensor::FlatTensorConfig::default()).unwrap()
    };
    let unknown = with(&ft);
    let parsed = FlatTensorFile::parse(&unknown, &options).expect("still parses");
    let err = flat_tensor::verify(&parsed)
        .expect_err("unknown dtype refused")
        .to_string();
    assert!(
        err.contains("named_data[0].tensor_layout.scalar_type"),
        "{err}"
    );

    let mut ft = file.flat_tensor().clone();
    let layout = ft.named_data.as_mut().unwrap()[0]
        .tensor_layout
        .as_mut()
        .unwrap();
    layout.sizes.as_mut().unwrap()[0] *= 1000;
    let short = with(&ft);
    let parsed = FlatTensorFile::parse(&short, &options).expect("still parses");
    let err = flat_tensor::verify(&parsed)
        .expect_err("short data refused")
        .to_string();
    assert!(
        err.contains("needs") && err.contains("file offset 0x"),
        "{err}"
    );
}

/// A value whose union type byte is set to NONE (0) keeps its table but has no type: the
/// runtime refuses the method (`Unknown KernelTypes value`, InvalidProgram), so verify
/// refuses it, at the type byte. Every value of every corpus program, one at a time.
#[test]
fn values_of_union_type_none_are_refused_at_their_type_byte() {
    let mut checked = 0;
    for path in corpus_ptes() {
        let bytes = std::fs::read(&path).expect("corpus file");
        if verify_error(&bytes).is_some() {
            continue; // refused already (legacy inline constants)
        }
        let file = PteFile::parse(&bytes, &ReadOptions::default()).expect("parses");
        let base = file.program_bytes().as_ptr() as usize - bytes.as_ptr() as usize;
        for (p, plan) in file.program().execution_plan.iter().flatten().enumerate() {
            for v in 0..plan.values.as_ref().map_or(0, Vec::len) {
                let field = format!("execution_plan[{p}].values[{v}].val_type");
                let at = base + locate(file.program_bytes(), &field).expect("located") as usize;
                if bytes[at] == 0 {
                    continue; // no type byte stored: the table's position
                }
                let mut mutant = bytes.clone();
                mutant[at] = 0;
                let err = verify_error(&mutant).unwrap_or_else(|| panic!("{field}: verifies"));
                assert!(
                    err.contains(&field) && err.contains(&format!("offset 0x{at:x}")),
                    "{}: {err}",
                    path.display()
                );
                checked += 1;
            }
        }
    }
    println!("{checked} values checked");
    assert!(checked > 500, "{checked}");
}

#[test]
fn negative_planned_buffer_sizes_are_refused_at_their_entry() {
    // The runtime's MethodMeta refuses a negative planned buffer size (entry 0 is
    // reserved and never read); found by `scripts/verify_vs_runtime.py --seed 7`.
    let mut checked = 0;
    for path in corpus_ptes() {
        let bytes = std::fs::read(&path).expect("corpus file");
        if verify_error(&bytes).is_some() {
            continue;
        }
        let file = PteFile::parse(&bytes, &ReadOptions::default()).expect("parses");
        let base = file.program_bytes().as_ptr() as usize - bytes.as_ptr() as usize;
        for (p, plan) in file.program().execution_plan.iter().flatten().enumerate() {
            let n = plan.non_const_buffer_sizes.as_ref().map_or(0, Vec::len);
            for k in 1..n {
                let field = format!("execution_plan[{p}].non_const_buffer_sizes[{k}]");
                let at = base + locate(file.program_bytes(), &field).expect("located") as usize;
                let mut mutant = bytes.clone();
                mutant[at..at + 8].copy_from_slice(&(-8i64).to_le_bytes());
                let err = verify_error(&mutant).unwrap_or_else(|| panic!("{field}: verifies"));
                assert!(
                    err.contains(&field) && err.contains("negative planned buffer size"),
                    "{}: {err}",
                    path.display()
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 10, "{checked}");
}

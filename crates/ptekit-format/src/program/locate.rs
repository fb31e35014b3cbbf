//! Byte offsets for field paths: where in a program flatbuffer the table or field named
//! by a path like `execution_plan[0].values[17].val.Tensor.sizes[2]` is stored.
//!
//! The semantic checks ([`validate`](fn@super::validate), the container's reference
//! checks) work on the decoded model, which keeps no positions; their findings carry a
//! field path, and [`locate`] walks the verified flatbuffer along that path to turn it
//! into a byte offset. The walk goes as deep as the path and the bytes allow: a scalar or
//! string field gives its slot in the table, a vector element its own position, an
//! absent field the table that would hold it. The field numbers used here are the
//! schema's (`program.fbs`); the tests compare them with the decoder's by locating every
//! value of the corpus programs and reading it back.

use ptekit_flatbuffers::{Limits, Table, Verifier};

/// How a field is stored.
#[derive(Clone, Copy)]
enum Kind {
    /// A scalar or a string: the walk ends at its slot.
    Leaf,
    /// A vector of scalars with elements of this many bytes.
    Scalars(usize),
    /// A sub-table.
    Table(Schema),
    /// A vector of tables.
    Tables(Schema),
    /// A union value; the next path element names the member.
    Union(fn(&str) -> Option<Schema>),
}

/// A table type: its fields by name (field number, kind).
type Schema = fn(&str) -> Option<(usize, Kind)>;

use Kind::{Leaf, Scalars, Table as Sub, Tables, Union};

fn program(name: &str) -> Option<(usize, Kind)> {
    Some(match name {
        "version" => (0, Leaf),
        "execution_plan" => (1, Tables(execution_plan)),
        "constant_buffer" => (2, Tables(buffer)),
        "backend_delegate_data" => (3, Tables(buffer)),
        "segments" => (4, Tables(data_segment)),
        "constant_segment" => (5, Sub(subsegment_offsets)),
        "mutable_data_segments" => (6, Tables(subsegment_offsets)),
        "named_data" => (7, Tables(named_data)),
        _ => return None,
    })
}

fn execution_plan(name: &str) -> Option<(usize, Kind)> {
    Some(match name {
        "name" => (0, Leaf),
        "container_meta_type" => (1, Sub(container_metadata)),
        "values" => (2, Tables(evalue)),
        "inputs" => (3, Scalars(4)),
        "outputs" => (4, Scalars(4)),
        "chains" => (5, Tables(chain)),
        "operators" => (6, Tables(operator)),
        "delegates" => (7, Tables(backend_delegate)),
        "non_const_buffer_sizes" => (8, Scalars(8)),
        "non_const_buffer_device" => (9, Tables(non_const_buffer_device)),
        _ => return None,
    })
}

fn container_metadata(name: &str) -> Option<(usize, Kind)> {
    Some(match name {
        "encoded_inp_str" => (0, Leaf),
        "encoded_out_str" => (1, Leaf),
        _ => return None,
    })
}

fn evalue(name: &str) -> Option<(usize, Kind)> {
    match name {
        "val_type" => Some((0, Leaf)),
        "val" => Some((1, Union(kernel_types))),
        _ => None,
    }
}

fn kernel_types(member: &str) -> Option<Schema> {
    Some(match member {
        "Null" => no_fields,
        "Int" | "Bool" | "Double" | "String" => single_leaf,
        "Tensor" => tensor,
        "TensorList" | "OptionalTensorList" => items_i32,
        "IntList" | "DoubleList" => items_8_bytes,
        "BoolList" => items_bool,
        _ => return None,
    })
}

fn no_fields(_: &str) -> Option<(usize, Kind)> {
    None
}

/// `Int.int_val`, `Bool.bool_val`, `Double.double_val`, `String.string_val`.
fn single_leaf(name: &str) -> Option<(usize, Kind)> {
    name.ends_with("_val").then_some((0, Leaf))
}

fn items_i32(name: &str) -> Option<(usize, Kind)> {
    (name == "items").then_some((0, Scalars(4)))
}

fn items_8_bytes(name: &str) -> Option<(usize, Kind)> {
    (name == "items").then_some((0, Scalars(8)))
}

fn items_bool(name: &str) -> Option<(usize, Kind)> {
    (name == "items").then_some((0, Scalars(1)))
}

fn tensor(name: &str) -> Option<(usize, Kind)> {
    Some(match name {
        "scalar_type" => (0, Leaf),
        "storage_offset" => (1, Leaf),
        "sizes" => (2, Scalars(4)),
        "dim_order" => (3, Scalars(1)),
        "requires_grad" => (4, Leaf),
        "data_buffer_idx" => (5, Leaf),
        "allocation_info" => (6, Sub(allocation_details)),
        "layout" => (7, Leaf),
        "shape_dynamism" => (8, Leaf),
        "extra_tensor_info" => (9, Sub(extra_tensor_info)),
        _ => return None,
    })
}

fn allocation_details(name: &str) -> Option<(usize, Kind)> {
    Some(match name {
        "memory_id" => (0, Leaf),
        "memory_offset_low" => (1, Leaf),
        "memory_offset_high" => (2, Leaf),
        _ => return None,
    })
}

fn extra_tensor_info(name: &str) -> Option<(usize, Kind)> {
    Some(match name {
        "mutable_data_segments_idx" => (0, Leaf),
        "fully_qualified_name" => (1, Leaf),
        "location" => (2, Leaf),
        "device_type" => (3, Leaf),
        "device_index" => (4, Leaf),
        _ => return None,
    })
}

fn chain(name: &str) -> Option<(usize, Kind)> {
    Some(match name {
        "inputs" => (0, Scalars(4)),
        "outputs" => (1, Scalars(4)),
        "instructions" => (2, Tables(instruction)),
        "stacktrace" => (3, Tables(frame_list)),
        _ => return None,
    })
}

fn instruction(name: &str) -> Option<(usize, Kind)> {
    match name {
        "instr_args_type" => Some((0, Leaf)),
        "instr_args" => Some((1, Union(instruction_arguments))),
        _ => None,
    }
}

fn instruction_arguments(member: &str) -> Option<Schema> {
    Some(match member {
        "KernelCall" => kernel_call,
        "DelegateCall" => delegate_call,
        "MoveCall" => move_call,
        "JumpFalseCall" => jump_false_call,
        "FreeCall" => free_call,
        _ => return None,
    })
}

fn kernel_call(name: &str) -> Option<(usize, Kind)> {
    match name {
        "op_index" => Some((0, Leaf)),
        "args" => Some((1, Scalars(4))),
        _ => None,
    }
}

fn delegate_call(name: &str) -> Option<(usize, Kind)> {
    match name {
        "delegate_index" => Some((0, Leaf)),
        "args" => Some((1, Scalars(4))),
        _ => None,
    }
}

fn move_call(name: &str) -> Option<(usize, Kind)> {
    match name {
        "move_from" => Some((0, Leaf)),
        "move_to" => Some((1, Leaf)),
        _ => None,
    }
}

fn jump_false_call(name: &str) -> Option<(usize, Kind)> {
    match name {
        "cond_value_index" => Some((0, Leaf)),
        "destination_instruction" => Some((1, Leaf)),
        _ => None,
    }
}

fn free_call(name: &str) -> Option<(usize, Kind)> {
    (name == "value_index").then_some((0, Leaf))
}

fn frame_list(name: &str) -> Option<(usize, Kind)> {
    (name == "items").then_some((0, Tables(frame)))
}

fn frame(name: &str) -> Option<(usize, Kind)> {
    Some(match name {
        "filename" => (0, Leaf),
        "lineno" => (1, Leaf),
        "name" => (2, Leaf),
        "context" => (3, Leaf),
        _ => return None,
    })
}

fn operator(name: &str) -> Option<(usize, Kind)> {
    Some(match name {
        "name" => (0, Leaf),
        "overload" => (1, Leaf),
        _ => return None,
    })
}

fn backend_delegate(name: &str) -> Option<(usize, Kind)> {
    Some(match name {
        "id" => (0, Leaf),
        "processed" => (1, Sub(data_reference)),
        "compile_specs" => (2, Tables(compile_spec)),
        _ => return None,
    })
}

fn data_reference(name: &str) -> Option<(usize, Kind)> {
    Some(match name {
        "location" => (0, Leaf),
        "index" => (1, Leaf),
        _ => return None,
    })
}

fn compile_spec(name: &str) -> Option<(usize, Kind)> {
    Some(match name {
        "key" => (0, Leaf),
        "value" => (1, Scalars(1)),
        _ => return None,
    })
}

fn non_const_buffer_device(name: &str) -> Option<(usize, Kind)> {
    Some(match name {
        "buffer_idx" => (0, Leaf),
        "device_type" => (1, Leaf),
        "device_index" => (2, Leaf),
        _ => return None,
    })
}

/// `Buffer.storage` and `BackendDelegateInlineData.data`.
fn buffer(name: &str) -> Option<(usize, Kind)> {
    matches!(name, "storage" | "data").then_some((0, Scalars(1)))
}

fn data_segment(name: &str) -> Option<(usize, Kind)> {
    Some(match name {
        "offset" => (0, Leaf),
        "size" => (1, Leaf),
        _ => return None,
    })
}

fn subsegment_offsets(name: &str) -> Option<(usize, Kind)> {
    Some(match name {
        "segment_index" => (0, Leaf),
        "offsets" => (1, Scalars(8)),
        _ => return None,
    })
}

fn named_data(name: &str) -> Option<(usize, Kind)> {
    Some(match name {
        "key" => (0, Leaf),
        "segment_index" => (1, Leaf),
        _ => return None,
    })
}

/// One element of a path: a name and the indices that follow it (`values[3]` is
/// `("values", [3])`).
fn split_element(element: &str) -> (&str, Vec<Option<usize>>) {
    let (name, mut rest) = match element.find('[') {
        Some(i) => element.split_at(i),
        None => (element, ""),
    };
    let mut indices = Vec::new();
    while let Some(body) = rest.strip_prefix('[') {
        let Some(end) = body.find(']') else { break };
        indices.push(body.get(..end).and_then(|s| s.parse().ok()));
        rest = body.get(end + 1..).unwrap_or("");
    }
    (name, indices)
}

/// The byte offset in `buf` (a program flatbuffer from the start of the file, as given to
/// [`decode_program`](super::decode_program)) of what `path` names, or of the deepest
/// table on the way to it that exists. `None` only when `buf` has no readable root
/// table. Paths are those of [`Issue::path`](super::Issue) and of the container's
/// errors: field names and vector indices joined by dots, a union followed by its
/// member (`val.Tensor`); words after a space are ignored.
pub fn locate(buf: &[u8], path: &str) -> Option<u64> {
    let verifier = Verifier::new(buf, Limits::default()).ok()?;
    let root = verifier.root().ok()?;
    let at = walk(root, program, path);
    u64::try_from(at).ok()
}

fn walk(root: Table<'_, '_>, schema: Schema, path: &str) -> usize {
    let mut table = root;
    let mut schema = schema;
    let mut best = root.position();
    let path = path.split(' ').next().unwrap_or("");
    let mut elements = path.split('.').filter(|e| !e.is_empty());
    while let Some(element) = elements.next() {
        let (name, indices) = split_element(element);
        let Some((field, kind)) = schema(name) else {
            return best;
        };
        if let Ok(Some(slot)) = table.field_position(field) {
            best = slot;
        } else {
            // Absent (or unreadable): the table is what the problem is about.
            return best;
        }
        match kind {
            Leaf => return best,
            Scalars(size) => {
                if let (Some(Some(i)), Ok(Some((data, len)))) =
                    (indices.first(), table.vector_position(field, size))
                {
                    if *i < len {
                        best = data.saturating_add(i.saturating_mul(size));
                    }
                }
                return best;
            }
            Sub(sub) => {
                let Ok(Some(t)) = table.table(field) else {
                    return best;
                };
                table = t;
                schema = sub;
                best = t.position();
            }
            Tables(sub) => {
                let Some(Some(i)) = indices.first() else {
                    return best;
                };
                let Ok(Some(vector)) = table.table_vector(field) else {
                    return best;
                };
                let Ok(t) = vector.get(*i) else {
                    return best;
                };
                table = t;
                schema = sub;
                best = t.position();
            }
            Union(members) => {
                let Ok(Some(t)) = table.table(field) else {
                    return best;
                };
                best = t.position();
                let Some(member) = elements.next().and_then(members) else {
                    return best;
                };
                table = t;
                schema = member;
            }
        }
    }
    best
}

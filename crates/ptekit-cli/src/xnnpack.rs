//! XNNPACK payloads in the CLI: the `xnnpack` object of each XNNPACK delegate in
//! `inspect` (JSON and text), the deep payload check of `verify`, and
//! `ptekit xnnpack dump`.

use std::fmt::Write as _;
use std::path::Path;

use ptekit_flatbuffers::Limits;
use ptekit_format::pte::PteFile;
use ptekit_format::xnnpack::{
    self, check_payload, decode_payload, delegate_payloads, is_xnnpack_payload, payload_json,
    render_summary, NamedSizes,
};
use serde_json::{json, Value};

use crate::commands::CliError;

/// Adds `xnnpack` (the payload summary, or `{"error": ...}`) to each XNNPACK entry of
/// `execution_plans[].delegates[]` in `value`, and a text section per delegate to `text`
/// (when `text` is `Some`).
pub fn augment_inspect(file: &PteFile<'_>, value: &mut Value, mut text: Option<&mut String>) {
    let named = NamedSizes::new(file, None);
    let lookup = |k: &str| named.in_program(k);
    let payloads = delegate_payloads(file);
    if let (Some(t), false) = (text.as_deref_mut(), payloads.is_empty()) {
        let _ = writeln!(t, "\nXNNPACK delegates ({})", payloads.len());
    }
    for d in payloads {
        let decoded = d
            .bytes
            .ok_or_else(|| "no processed data".to_string())
            .and_then(|b| decode_payload(b, &Limits::default()).map_err(|e| e.to_string()));
        let (entry, rendered) = match decoded {
            Ok(p) => {
                let s = xnnpack::summary(&p, Some(&lookup));
                let rendered = render_summary(&s, "    ");
                (serde_json::to_value(&s).unwrap_or(Value::Null), rendered)
            }
            Err(e) => (json!({ "error": e }), format!("    error: {e}\n")),
        };
        if let Some(t) = text.as_deref_mut() {
            let _ = writeln!(
                t,
                "  execution_plan[{}].delegates[{}] ({} bytes)",
                d.plan,
                d.delegate,
                d.bytes.map_or(0, <[u8]>::len)
            );
            t.push_str(&rendered);
        }
        if let Some(obj) = value
            .get_mut("execution_plans")
            .and_then(|p| p.get_mut(d.plan))
            .and_then(|p| p.get_mut("delegates"))
            .and_then(|ds| ds.get_mut(d.delegate))
            .and_then(Value::as_object_mut)
        {
            obj.insert("xnnpack".into(), entry);
        }
    }
}

/// Checks every XNNPACK payload of `file` deeply (header, flatbuffer, cross-references,
/// named keys against the program's named data and `ptd`). Returns the number checked.
pub fn verify_payloads(
    path: &Path,
    file: &PteFile<'_>,
    ptd: Option<&ptekit_format::flat_tensor::FlatTensorFile<'_>>,
) -> Result<usize, CliError> {
    let named = NamedSizes::new(file, ptd);
    let payloads = delegate_payloads(file);
    for d in &payloads {
        check_payload(d, &named, &Limits::default()).map_err(|e| CliError::Invalid {
            path: path.to_path_buf(),
            message: if ptd.is_none() && matches!(e.kind(), xnnpack::XnnpackErrorKind::NamedKey) {
                format!("{e} (pass the program's .ptd with --data)")
            } else {
                e.to_string()
            },
        })?;
    }
    Ok(payloads.len())
}

/// `ptekit xnnpack dump FILE [--delegate N]`: one payload as lossless JSON. `FILE` is a
/// program (`N` counts its XNNPACK delegates in plan order, from 0) or a bare payload.
pub fn dump(path: &Path, delegate: usize) -> Result<(), CliError> {
    let map =
        ptekit_format::mapped::MappedFile::open(path).map_err(|source| CliError::Container {
            path: path.to_path_buf(),
            source,
        })?;
    let bytes = map.bytes();
    let invalid = |message: String| CliError::Invalid {
        path: path.to_path_buf(),
        message,
    };
    let value = if is_xnnpack_payload(bytes) {
        let p = decode_payload(bytes, &Limits::default()).map_err(|e| invalid(e.to_string()))?;
        payload_json(&p)
    } else {
        let file =
            ptekit_format::pte::PteFile::parse(bytes, &Default::default()).map_err(|source| {
                CliError::Pte {
                    path: path.to_path_buf(),
                    source,
                }
            })?;
        let payloads = delegate_payloads(&file);
        let d = payloads.get(delegate).ok_or_else(|| CliError::Usage {
            path: path.to_path_buf(),
            message: format!(
                "--delegate {delegate}: the program has {} XNNPACK delegate(s)",
                payloads.len()
            ),
        })?;
        let blob = d
            .bytes
            .ok_or_else(|| invalid("the delegate has no processed data".into()))?;
        let p = decode_payload(blob, &Limits::default())
            .map_err(|e| invalid(e.in_delegate(d.plan, d.delegate).to_string()))?;
        let mut v = payload_json(&p);
        if let Value::Object(m) = &mut v {
            m.insert("execution_plan".into(), json!(d.plan));
            m.insert("delegate".into(), json!(d.delegate));
            m.insert("payload_bytes".into(), json!(blob.len()));
        }
        v
    };
    outln!("{}", serde_json::to_string_pretty(&value)?);
    Ok(())
}

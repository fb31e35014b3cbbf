//! XNNPACK payloads in the CLI: the text section of each XNNPACK delegate in
//! `inspect` and `ptekit xnnpack dump` (the deep payload check of `verify` is
//! `ptekit_format::inspect::verify`).

use std::fmt::Write as _;
use std::path::Path;

use ptekit_flatbuffers::Limits;
use ptekit_format::inspect::XnnpackEntry;
use ptekit_format::xnnpack::{
    decode_payload, delegate_payloads, is_xnnpack_payload, payload_json, render_summary,
};
use serde_json::{json, Value};

use crate::commands::CliError;

/// Appends a text section per XNNPACK delegate (its payload summary or why it could not
/// be read) to `text`.
pub fn render_entries(entries: &[XnnpackEntry], text: &mut String) {
    if entries.is_empty() {
        return;
    }
    let _ = writeln!(text, "\nXNNPACK delegates ({})", entries.len());
    for e in entries {
        let _ = writeln!(
            text,
            "  execution_plan[{}].delegates[{}] ({} bytes)",
            e.plan,
            e.delegate,
            crate::render::thousands(e.bytes)
        );
        match &e.summary {
            Ok(s) => text.push_str(&render_summary(s, "    ")),
            Err(msg) => {
                let _ = writeln!(text, "    error: {msg}");
            }
        }
    }
}

/// `ptekit xnnpack dump FILE [--delegate N]`: one payload as lossless JSON. `FILE` is a
/// program or a bundled program's (`N` counts its XNNPACK delegates in plan order, from
/// 0) or a bare payload;
/// `-` reads standard input.
pub fn dump(path: &Path, delegate: usize) -> Result<(), CliError> {
    let input = crate::input::Input::open(path)?;
    let bytes = input.bytes();
    let invalid = |message: String| CliError::Invalid {
        path: path.to_path_buf(),
        message,
    };
    let value = if is_xnnpack_payload(bytes) {
        let p = decode_payload(bytes, &Limits::default()).map_err(|e| invalid(e.to_string()))?;
        payload_json(&p)
    } else {
        let file = crate::input::program_of(path, &input, "xnnpack dump")?;
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

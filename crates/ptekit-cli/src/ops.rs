//! `ptekit ops FILE... [--yaml | --json]`: the operators of one or more programs, or the
//! selective-build YAML `gen_oplist --model_file_path` writes for them.

use std::path::PathBuf;

use ptekit_format::analysis::ops::{selective_build_yaml, OpList};

use crate::commands::CliError;
use crate::input::{display_name, program_of, Input};

/// How `ops` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpsFormat {
    /// One operator per line.
    Lines,
    /// The selective-build YAML.
    Yaml,
    /// `{"operators": {...}, "et_kernel_metadata": {...}}`.
    Json,
}

/// Runs `ptekit ops`.
pub fn ops(files: &[PathBuf], format: OpsFormat) -> Result<(), CliError> {
    let mut list = OpList::new();
    let mut names = Vec::new();
    for (i, path) in files.iter().enumerate() {
        let input = Input::open(path)?;
        let file = program_of(path, &input, "ops")?;
        list.add_program(file.program(), i);
        names.push(display_name(path));
    }
    let out = match format {
        OpsFormat::Yaml => selective_build_yaml(&list, &names),
        OpsFormat::Lines => list
            .operators
            .keys()
            .map(|k| format!("{}\n", ptekit_format::units::printable(k)))
            .collect(),
        OpsFormat::Json => {
            let operators: serde_json::Map<String, serde_json::Value> = list
                .operators
                .iter()
                .map(|(op, srcs)| {
                    let used: Vec<&str> = srcs
                        .iter()
                        .filter_map(|&s| names.get(s).map(String::as_str))
                        .collect();
                    (op.clone(), serde_json::json!({ "files": used }))
                })
                .collect();
            let value = serde_json::json!({
                "operators": operators,
                "et_kernel_metadata": list.kernel_metadata,
            });
            format!("{}\n", serde_json::to_string_pretty(&value)?)
        }
    };
    out!("{out}");
    Ok(())
}

//! `ptekit dump FILE [--with-data]` and `ptekit build JSON -o OUT.pte [--data-from FILE]`:
//! a program as JSON text and back, through `ptekit_format::pte::dump`.

use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};

use ptekit_format::mapped::MappedFile;
use ptekit_format::program::DataFrom;
use ptekit_format::pte::dump::{build as build_pte, write_dump, BuildError, DumpOptions};
use ptekit_format::pte::{PteFile, ReadOptions, WriteOptions};

use crate::commands::{check_program, detect, CliError, Kind};
use crate::input::{display_name, Input};
use crate::progress::bytes_bar;

/// `ptekit dump FILE [--with-data]`.
pub fn dump(path: &Path, with_data: bool) -> Result<(), CliError> {
    let input = Input::open(path)?;
    let message = match detect(path, input.bytes())? {
        Kind::Program => None,
        Kind::Bundled => Some(
            "dump reads programs (.pte); `ptekit bundle extract-program` gets the program \
             of a .bpte",
        ),
        Kind::TensorData => Some("a tensor-data file (.ptd) has no program; dump needs a .pte"),
    };
    if let Some(message) = message {
        return Err(CliError::Usage {
            path: path.to_path_buf(),
            message: message.into(),
        });
    }
    let file = input
        .parse(&ReadOptions::default())
        .map_err(|source| CliError::Pte {
            path: path.to_path_buf(),
            source,
        })?;
    let mut out = BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    if let Err(e) =
        write_dump(&file, &DumpOptions { with_data }, &mut out).and_then(|()| out.flush())
    {
        crate::output::fail(&e);
    }
    Ok(())
}

/// `ptekit build JSON -o OUT.pte [--data-from FILE.pte]`: reads the document, checks the
/// program it describes like `verify` does (nothing is written when that fails), writes
/// the file atomically and reads it back through the verified reader.
pub fn build(json: &Path, output: &Path, data_from: Option<&Path>) -> Result<(), CliError> {
    let doc = Input::open(json)?;
    let shown = PathBuf::from(display_name(json));
    let build_err = |source: BuildError| CliError::Build {
        path: shown.clone(),
        source,
    };
    let value: serde_json::Value =
        serde_json::from_slice(doc.bytes()).map_err(|e| build_err(BuildError::Json(e.into())))?;
    let data_map = match data_from {
        Some(p) => Some(MappedFile::open(p).map_err(|source| CliError::Container {
            path: p.to_path_buf(),
            source,
        })?),
        None => None,
    };
    let built =
        build_pte(&value, DataFrom(data_map.as_ref().map(MappedFile::bytes))).map_err(build_err)?;
    check_program(&shown, &built.program)?;
    let plan = built.planned;
    let pte_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CliError::Pte { path, source }
    };
    let bar = bytes_bar(plan.len(), "build");
    let mut progress = |done: u64, _total: u64| bar.set_position(done);
    plan.write_atomic(output, &WriteOptions::default(), Some(&mut progress))
        .map_err(pte_err(output))?;
    bar.finish_and_clear();
    let written = MappedFile::open(output).map_err(|source| CliError::Container {
        path: output.to_path_buf(),
        source,
    })?;
    PteFile::parse(written.bytes(), &ReadOptions::default()).map_err(pte_err(output))?;
    Ok(())
}

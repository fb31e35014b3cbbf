//! `ptekit`: inspect, verify and rewrite ExecuTorch artifacts (.pte, .bpte, .ptd), and manage XNNPACK
//! packed-weight caches.
//!
//! Exit codes: 0 success, 1 invalid input or failed check, 2 usage error, 141 when the
//! reader of standard output went away before everything was written (see [`output`]).

// Standard output goes through `output` (a closed pipe is a quiet exit, not a panic).
#![deny(clippy::print_stdout)]

#[macro_use]
mod output;

mod cache;
mod commands;
mod diff;
mod dump;
mod input;
mod ops;
mod progress;
mod render;
mod xnnpack;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// Inspect, verify and rewrite ExecuTorch .pte programs; manage packed-weight caches.
#[derive(Debug, Parser)]
#[command(name = "ptekit", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show what a file holds: per method the inputs and outputs (dtype, sizes, dim
    /// order, memory planning), operators and how often they are called, instructions,
    /// delegates and the delegated share; constant methods with their values; data
    /// expected from outside; segments, named data and where the bytes go.
    Inspect {
        /// The files to read (.pte, .bpte, .ptd; `-` for standard input).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Print JSON instead of tables (one object; an array of objects, each with
        /// "file", for several files).
        #[arg(long)]
        json: bool,
        /// Also list the N largest tensors (with the operators that use them), delegate
        /// payloads and named-data entries.
        #[arg(long, value_name = "N")]
        top: Option<usize>,
        /// A tensor-data file (.ptd) to check against the data the programs expect from
        /// outside.
        #[arg(long, value_name = "FILE.ptd")]
        data: Option<PathBuf>,
    },
    /// Verify files completely; exit 0 if all are valid, else 1 with one line per
    /// invalid file on stderr.
    Verify {
        /// The files to check (`-` for standard input).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The program's external tensor data (.ptd), where XNNPACK payloads' named
        /// constants may live.
        #[arg(long, value_name = "FILE.ptd")]
        data: Option<PathBuf>,
        /// Print a JSON object per file (`ok`, `kind`, what was checked, or `error`).
        #[arg(long)]
        json: bool,
    },
    /// Look inside XNNPACK delegate payloads.
    #[command(subcommand)]
    Xnnpack(XnnpackCommand),
    /// Parse a file completely and write it back, keeping its layout unless options
    /// ask for another one. The destination is replaced atomically.
    Rewrite(RewriteArgs),
    /// List the operators of programs; with --yaml, the selective-build YAML that
    /// `gen_oplist --model_file_path` writes (several files merge into one list).
    Ops {
        /// Programs (.pte or .bpte; `-` for standard input).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Print the selective-build YAML (selected_operators.yaml) with kernel metadata.
        #[arg(long, conflicts_with = "json")]
        yaml: bool,
        /// Print operators and kernel metadata as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Compare two programs (.pte, or .bpte through their programs): methods, operators,
    /// delegates, values, tensors with data statistics, named data and layout; or two
    /// tensor-data files (.ptd): keys, tensor layouts and data statistics, header and
    /// segments. Exit 0 when equivalent, 1 when different, 2 on trouble (like diff).
    Diff {
        /// The first file (`-` for standard input).
        a: PathBuf,
        /// The second file.
        b: PathBuf,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        /// Differing elements to show per tensor.
        #[arg(long, default_value_t = 10, value_name = "N")]
        max_samples: usize,
    },
    /// Print a program (.pte) as JSON: the program in the shape of the reference's
    /// `_program_to_json` plus a `ptekit_container` section (header, alignments, segment
    /// bytes). Byte arrays over 64 bytes are elided as {"ptekit_elided": {"size": N,
    /// "offset": O}} (N bytes at offset O of FILE) unless --with-data.
    Dump {
        /// The program (.pte).
        file: PathBuf,
        /// Write every byte: a dump that `ptekit build` turns back into FILE, byte for byte.
        #[arg(long)]
        with_data: bool,
    },
    /// Write the .pte that a JSON document of `ptekit dump` describes (possibly edited).
    /// The destination is replaced atomically; the result is verified.
    Build {
        /// The JSON document (`-` for standard input).
        json: PathBuf,
        /// Where to write the program.
        #[arg(short, long, value_name = "OUT.pte")]
        output: PathBuf,
        /// The file the document was dumped from, for the bytes a dump without
        /// --with-data elides.
        #[arg(long, value_name = "FILE.pte")]
        data_from: Option<PathBuf>,
    },
    /// Make bundled programs (.bpte: a program plus test cases) and take them apart.
    #[command(subcommand)]
    Bundle(BundleCommand),
    /// Inspect, verify, compact and report on XNNPACK packed-weight cache files.
    #[command(subcommand)]
    Cache(cache::CacheCommand),
    /// Print a shell completion script: `ptekit completions bash > ~/.local/share/bash-completion/completions/ptekit`
    /// (zsh: a file `_ptekit` in a folder of `$fpath`; fish: `~/.config/fish/completions/ptekit.fish`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff): `ptekit man > ~/.local/share/man/man1/ptekit.1`; with
    /// --dir, write `ptekit.1` and one page per subcommand (`ptekit-inspect.1`, ...) there.
    Man {
        /// Write every page into this folder instead of printing the main page.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum XnnpackCommand {
    /// Print one XNNPACK payload as lossless JSON (floats exact, NaN/inf as strings).
    Dump {
        /// A program (.pte, or .bpte through its program) or a bare payload (`-` for
        /// standard input).
        file: PathBuf,
        /// Which XNNPACK delegate of the program, counted from 0 in method order.
        #[arg(long, value_name = "N", default_value_t = 0)]
        delegate: usize,
    },
}

#[derive(Debug, Subcommand)]
enum BundleCommand {
    /// Write the program embedded in a bundled program as a .pte file.
    ExtractProgram {
        /// The bundled program (.bpte).
        input: PathBuf,
        /// Where to write the program (.pte).
        output: PathBuf,
    },
    /// Bundle a program with test cases read from NumPy .npz archives.
    Make(BundleMakeArgs),
}

/// Options of `ptekit bundle make`.
#[derive(Debug, Args)]
#[command(
    override_usage = "ptekit bundle make PROGRAM.pte --method NAME INPUTS.npz OUTPUTS.npz [MORE.npz PAIRS...] [--method NAME ...] -o OUT.bpte [--max-npz-bytes N]"
)]
pub struct BundleMakeArgs {
    /// The program (.pte).
    pub program: PathBuf,
    /// The rest of the command line: `--method NAME INPUTS.npz OUTPUTS.npz [...]` groups, one pair of archives per test
    /// case (arrays `in0, in1, ...` and `out0, ...`; both may be the same archive),
    /// repeated for more methods, and `-o OUT.bpte`. Every array must have the dtype and
    /// shape of the method's input or output (checked from its header, before its data
    /// is read). `--max-npz-bytes N`: the most bytes all archives together may expand to
    /// (default 4 GiB, 4294967296), checked against the sizes the archives declare.
    #[arg(
        value_name = "SPEC",
        trailing_var_arg = true,
        allow_hyphen_values = true,
        required = true
    )]
    pub spec: Vec<String>,
}

/// The parsed `bundle make` specification.
pub struct BundleSpec {
    /// `(method name, [inputs.npz, outputs.npz, ...])` in command-line order.
    pub methods: Vec<(String, Vec<PathBuf>)>,
    /// Where to write the bundled program.
    pub output: PathBuf,
    /// The most bytes all archives together may expand to.
    pub max_npz_bytes: u64,
}

impl BundleMakeArgs {
    /// Groups the trailing arguments into methods with their archive pairs.
    pub fn parse_spec(&self) -> Result<BundleSpec, String> {
        let mut methods: Vec<(String, Vec<PathBuf>)> = Vec::new();
        let mut output = None;
        let mut max_npz_bytes = ptekit_format::npz::DEFAULT_MAX_NPZ_BYTES;
        let mut it = self.spec.iter();
        while let Some(arg) = it.next() {
            match arg.as_str() {
                "--method" | "-m" => {
                    let name = it.next().ok_or("--method needs a method name")?;
                    methods.push((name.clone(), Vec::new()));
                }
                "-o" | "--output" => {
                    let out = it.next().ok_or("-o needs a file name")?;
                    output = Some(PathBuf::from(out));
                }
                "--max-npz-bytes" => {
                    let n = it.next().ok_or("--max-npz-bytes needs a number of bytes")?;
                    max_npz_bytes = n
                        .parse()
                        .map_err(|_| format!("--max-npz-bytes {n:?}: not a number of bytes"))?;
                }
                other if other.starts_with('-') => {
                    return Err(format!("unexpected option {other:?}"));
                }
                file => match methods.last_mut() {
                    Some((_, files)) => files.push(PathBuf::from(file)),
                    None => return Err(format!("{file:?} comes before any --method NAME")),
                },
            }
        }
        if methods.is_empty() {
            return Err("at least one --method NAME INPUTS.npz OUTPUTS.npz is required".into());
        }
        for (name, files) in &methods {
            if files.is_empty() || files.len() % 2 != 0 {
                return Err(format!(
                    "--method {name} needs pairs of INPUTS.npz OUTPUTS.npz, got {} file(s)",
                    files.len()
                ));
            }
        }
        let output = output.ok_or("-o OUT.bpte is required")?;
        Ok(BundleSpec {
            methods,
            output,
            max_npz_bytes,
        })
    }
}

/// Options of `ptekit rewrite`.
#[derive(Debug, Args)]
pub struct RewriteArgs {
    /// The file to read (.pte, .bpte or .ptd).
    pub input: PathBuf,
    /// Where to write the result (may equal the input).
    pub output: PathBuf,
    /// Alignment of every segment's start, in bytes (e.g. 16384 for 16K pages); any
    /// positive number, like the reference (segments start at multiples of it).
    #[arg(long, value_name = "N")]
    pub segment_alignment: Option<u64>,
    /// Alignment of constant tensors inside the constant segment (a power of two).
    #[arg(long, value_name = "N")]
    pub tensor_alignment: Option<usize>,
    /// Alignment of delegate payloads (a power of two).
    #[arg(long, value_name = "N")]
    pub delegate_alignment: Option<usize>,
    /// Re-serialize with the current reference layout: inline constants move into a
    /// segment and the 32-byte extended header is written.
    #[arg(long)]
    pub upgrade: bool,
    /// fsync the result before renaming it into place, and the folder after, so the new
    /// file survives a power loss too. Without it the replacement is still atomic for
    /// every process (a crash never leaves a half-written destination), like `cp` it
    /// just leaves flushing to the kernel.
    #[arg(long)]
    pub sync: bool,
    /// Print what was written as one JSON object: `layout` is `exact` (the input's
    /// layout, byte for byte where the input was written like the reference),
    /// `canonical` (the input was laid out by another writer: the reference's layout,
    /// with `reason`) or `relayout` (layout options were given).
    #[arg(long)]
    pub json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Inspect {
            files,
            json,
            top,
            data,
        } => {
            let options = commands::InspectOptions {
                json,
                top: top.unwrap_or(0),
                data: data.as_deref(),
            };
            return all_ok(commands::inspect(&files, &options));
        }
        Command::Verify { files, data, json } => {
            return all_ok(commands::verify(&files, data.as_deref(), json))
        }
        Command::Xnnpack(XnnpackCommand::Dump { file, delegate }) => xnnpack::dump(&file, delegate),
        Command::Ops { files, yaml, json } => {
            let format = if yaml {
                ops::OpsFormat::Yaml
            } else if json {
                ops::OpsFormat::Json
            } else {
                ops::OpsFormat::Lines
            };
            ops::ops(&files, format)
        }
        Command::Diff {
            a,
            b,
            json,
            max_samples,
        } => {
            return match diff::diff(&a, &b, json, max_samples) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::from(1),
                Err(err) => {
                    eprintln!("ptekit: {err}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Rewrite(args) => commands::rewrite(&args),
        Command::Dump { file, with_data } => dump::dump(&file, with_data),
        Command::Build {
            json,
            output,
            data_from,
        } => dump::build(&json, &output, data_from.as_deref()),
        Command::Bundle(BundleCommand::ExtractProgram { input, output }) => {
            commands::bundle_extract(&input, &output)
        }
        Command::Bundle(BundleCommand::Make(args)) => match args.parse_spec() {
            Ok(spec) => commands::bundle_make(&args.program, &spec),
            Err(message) => {
                use clap::CommandFactory;
                // The error shows the usage of `bundle make`, not of `ptekit`.
                let mut cli = Cli::command();
                cli.build();
                let make = cli
                    .find_subcommand_mut("bundle")
                    .and_then(|b| b.find_subcommand_mut("make"))
                    .cloned();
                make.unwrap_or(cli)
                    .error(clap::error::ErrorKind::ValueValidation, message)
                    .exit()
            }
        },
        Command::Cache(cmd) => return exit_code(cache::run(cmd)),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "ptekit", &mut script);
            out!("{}", String::from_utf8_lossy(&script));
            Ok(())
        }
        Command::Man { dir } => {
            use clap::CommandFactory;
            commands::man(Cli::command(), dir.as_deref())
        }
    };
    match code {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("ptekit: {err}");
            ExitCode::from(1)
        }
    }
}

/// Exit 0 when every file was fine, 1 when one was not (already reported) or on an error.
fn all_ok(result: Result<bool, commands::CliError>) -> ExitCode {
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(err) => {
            eprintln!("ptekit: {err}");
            ExitCode::from(1)
        }
    }
}

fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

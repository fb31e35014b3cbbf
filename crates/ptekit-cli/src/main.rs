//! `ptekit`: inspect, verify and rewrite ExecuTorch artifacts, and manage XNNPACK
//! packed-weight caches.
//!
//! Exit codes: 0 success, 1 invalid input or failed check, 2 usage error.

mod commands;
mod progress;
mod render;
mod summary;

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
    /// Show what a file holds: methods, values, instructions, operators, delegates,
    /// segments, named data and where the bytes go.
    Inspect {
        /// The file to read.
        file: PathBuf,
        /// Print one JSON object instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Verify a file completely; exit 0 if valid, else 1 with the reason on stderr.
    Verify {
        /// The file to check.
        file: PathBuf,
    },
    /// Parse a file completely and write it back, keeping its layout unless options
    /// ask for another one. The destination is replaced atomically.
    Rewrite(RewriteArgs),
    /// Inspect, verify, compact and report on XNNPACK packed-weight cache files.
    #[command(subcommand)]
    Cache(ptekit_cache::cli::CacheCommand),
}

/// Options of `ptekit rewrite`.
#[derive(Debug, Args)]
pub struct RewriteArgs {
    /// The file to read.
    pub input: PathBuf,
    /// Where to write the result (may equal the input).
    pub output: PathBuf,
    /// Alignment of every segment's start, in bytes (e.g. 16384 for 16K pages).
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
    /// Do not fsync the result before renaming it into place.
    #[arg(long)]
    pub no_sync: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Inspect { file, json } => commands::inspect(&file, json),
        Command::Verify { file } => commands::verify(&file),
        Command::Rewrite(args) => commands::rewrite(&args),
        Command::Cache(cmd) => return exit_code(ptekit_cache::cli::run(cmd)),
    };
    match code {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("ptekit: {err}");
            ExitCode::from(1)
        }
    }
}

fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

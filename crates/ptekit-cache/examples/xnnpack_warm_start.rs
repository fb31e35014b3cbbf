//! Builds an XNNPACK subgraph (a 3x3 convolution and N fully connected
//! layers with static weights made from a seed), creates a runtime with or
//! without the packed-weight cache, runs one inference on one thread, and
//! prints one JSON line.
//!
//! ```text
//! xnnpack_warm_start --xnnpack-lib DIR [--cache FILE] [--layers N] [--width W]
//!                    [--weights-seed S] [--no-sync] --json
//! ```
//!
//! `--no-sync` skips msync/fdatasync on commit (crash-safe, not power-loss safe).
//! ```text
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use ptekit_cache::xnnpack::{output_sha256, run_demo, DemoModel, Xnnpack};
use ptekit_cache::{sys, CacheOptions, WeightsCache};

struct Args {
    lib: PathBuf,
    cache: Option<PathBuf>,
    layers: usize,
    width: usize,
    seed: u64,
    json: bool,
    no_sync: bool,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        lib: ptekit_cache::xnnpack::default_lib_dir(),
        cache: None,
        layers: 8,
        width: 1024,
        seed: 1,
        json: false,
        no_sync: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut val = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match k.as_str() {
            "--xnnpack-lib" => a.lib = PathBuf::from(val("--xnnpack-lib")?),
            "--cache" => a.cache = Some(PathBuf::from(val("--cache")?)),
            "--layers" => {
                a.layers = val("--layers")?
                    .parse()
                    .map_err(|e| format!("--layers: {e}"))?;
            }
            "--width" => {
                a.width = val("--width")?
                    .parse()
                    .map_err(|e| format!("--width: {e}"))?;
            }
            "--weights-seed" => {
                a.seed = val("--weights-seed")?
                    .parse()
                    .map_err(|e| format!("--weights-seed: {e}"))?;
            }
            "--json" => a.json = true,
            "--no-sync" => a.no_sync = true,
            "-h" | "--help" => {
                return Err("usage: xnnpack_warm_start --xnnpack-lib DIR [--cache FILE] [--layers N] [--width W] [--weights-seed S] [--no-sync] --json".into())
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.layers == 0 || a.width == 0 {
        return Err("--layers and --width must be positive".into());
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let x = match Xnnpack::load(&args.lib) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: {e} (run scripts/fetch-xnnpack.sh)");
            return ExitCode::from(1);
        }
    };
    let model = DemoModel::new(args.layers, args.width, args.seed);
    let cache = args.cache.as_ref().map(|p| {
        let mut o = CacheOptions::default();
        o.file.durable = !args.no_sync;
        WeightsCache::new(Some(p), o)
    });
    let rss_before = sys::rss_kib();
    let run = match run_demo(&x, &model, cache.as_ref()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let rss_after = sys::rss_kib();
    let cache_json = match &cache {
        None => serde_json::Value::Null,
        Some(c) => {
            let s = c.stats();
            serde_json::json!({
                "hits": s.hits,
                "misses": s.misses,
                "file_bytes": s.file_bytes,
                "heap_fallbacks": s.heap_fallbacks,
                "heap_fallback_reasons": s.heap_fallback_reasons,
                "bytes_mapped": s.bytes_mapped,
                "bytes_packed": s.bytes_packed,
                "bytes_heap": s.bytes_heap,
                "dead_bytes": s.dead_bytes,
                "live_entries": s.live_entries,
                "file_error": s.file_error,
            })
        }
    };
    let mem = match (rss_before, rss_after) {
        (Some(b), Some(a)) => serde_json::json!({
            "rss_anon_kb": a.0,
            "rss_file_kb": a.1,
            "rss_anon_delta_kb": a.0 as i64 - b.0 as i64,
            "rss_file_delta_kb": a.1 as i64 - b.1 as i64,
        }),
        _ => serde_json::Value::Null,
    };
    let out = serde_json::json!({
        "create_ms": run.create_ms,
        "output_sha256": output_sha256(&run.output),
        "cache": cache_json,
        "memory": mem,
        "layers": args.layers,
        "width": args.width,
        "weights_seed": args.seed,
    });
    if args.json {
        println!("{out}");
    } else {
        println!(
            "create_ms={:.2} output_sha256={}",
            run.create_ms,
            output_sha256(&run.output)
        );
    }
    drop(run);
    ExitCode::SUCCESS
}

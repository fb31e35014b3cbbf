//! The `ptekit cache ...` subcommands: [`CacheCommand`] is embedded as a clap subcommand;
//! [`run`] prints and returns the exit code. What a file is and whether it is valid is
//! decided by `ptekit_cache::check`.

use std::path::{Path, PathBuf};

use ptekit_cache::check::{self, open_read_only, read_xpwc, verify_file, FileKind};
use ptekit_cache::format::{SlotState, Summary};
use ptekit_cache::store::{self, FileOptions};
use ptekit_format::units::{bytes, printable, thousands};

/// Packed-weight cache files: ptekit's own (`PTKWC`) and the reference
/// runtime's `XPWC` v2 (inspect, verify, stats).
#[derive(clap::Subcommand, Debug, Clone)]
pub enum CacheCommand {
    /// List the entries of a cache file and its byte accounting.
    Inspect {
        /// The cache file.
        file: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check a cache file: structure, index records, packed-byte digests.
    /// Exit 0 when valid, 1 with the reason otherwise.
    Verify {
        /// The cache file.
        file: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Rewrite the live entries into a new file and rename it over the old
    /// one (processes that map the old file keep working). The new file holds
    /// only the header, an index with room for its records, and the live
    /// packed bytes; --json gives the byte accounting before and after.
    Compact {
        /// The cache file.
        file: PathBuf,
        /// Seconds to wait for the writer lock.
        #[arg(long, value_name = "SECONDS", default_value_t = 30)]
        lock_timeout: u64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Byte accounting only: file size, header and index, live, dead, padding and free
    /// bytes, index slots and extents.
    Stats {
        /// The cache file.
        file: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a command; returns the process exit code (0 ok, 1 invalid file or
/// failure, 2 unreadable input).
pub fn run(cmd: CacheCommand) -> i32 {
    let (CacheCommand::Inspect { file, .. }
    | CacheCommand::Verify { file, .. }
    | CacheCommand::Compact { file, .. }
    | CacheCommand::Stats { file, .. }) = &cmd;
    // A FIFO would block the cache's reader; a directory or device is no cache file.
    if let Err(e) = ptekit_format::mapped::open_regular(file) {
        return fail(e);
    }
    match cmd {
        CacheCommand::Inspect { file, json } => inspect(&file, json),
        CacheCommand::Verify { file, json } => verify(&file, json),
        CacheCommand::Compact {
            file,
            lock_timeout,
            json,
        } => compact(&file, lock_timeout, json),
        CacheCommand::Stats { file, json } => stats(&file, json),
    }
}

fn print_summary(s: &Summary) {
    outln!("file_bytes:        {}", bytes(s.file_bytes));
    outln!("header_and_index:  {}", bytes(s.index_region_bytes));
    outln!("live_entries:      {}", thousands(s.live_entries));
    outln!("live_bytes:        {}", bytes(s.live_bytes));
    outln!("dead_bytes:        {}", bytes(s.dead_bytes));
    outln!("dead_entries:      {}", thousands(s.dead_entries));
    outln!("orphan_reserves:   {}", thousands(s.orphan_reservations));
    outln!("padding_bytes:     {}", bytes(s.padding_bytes));
    outln!("free_tail_bytes:   {}", bytes(s.free_tail_bytes));
    outln!(
        "index_slots:       {}/{}",
        thousands(s.slots_used),
        thousands(s.slot_count)
    );
    outln!(
        "index_extents:     {} ({})",
        thousands(s.index_extents),
        bytes(s.index_extent_bytes)
    );
    outln!("memos:             {}", thousands(s.memos));
    outln!("torn_slots:        {}", thousands(s.torn_slots));
    if s.newest_use > 0 {
        outln!(
            "last_use:          {} .. {} (unix s)",
            s.oldest_use,
            s.newest_use
        );
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn fail(msg: impl std::fmt::Display) -> i32 {
    eprintln!("error: {msg}");
    2
}

/// Exit status 1 for a file that is neither kind of cache file.
fn not_a_cache_file(path: &Path) -> i32 {
    eprintln!(
        "{}: neither a ptekit cache file nor an XPWC v2 file",
        path.display()
    );
    1
}

fn inspect(path: &Path, json: bool) -> i32 {
    match check::file_kind(path) {
        Err(e) => fail(e),
        Ok(FileKind::Unknown) => not_a_cache_file(path),
        Ok(FileKind::Xpwc) => match read_xpwc(path) {
            Err(e) => fail(e),
            Ok(Err(e)) => {
                if json {
                    outln!(
                        "{}",
                        serde_json::json!({"format": "XPWC", "valid": false, "error": e.to_string()})
                    );
                } else {
                    outln!("format: XPWC v2 (reference runtime)\ninvalid: {e}");
                }
                1
            }
            Ok(Ok(x)) => {
                if json {
                    outln!(
                        "{}",
                        serde_json::json!({"format": "XPWC", "valid": true, "file": x})
                    );
                } else {
                    outln!("format: XPWC v2 (reference runtime)");
                    outln!("file_bytes:        {}", bytes(x.file_bytes));
                    outln!("entries:           {}", thousands(x.entries.len() as u64));
                    outln!("live_bytes:        {}", bytes(x.live_bytes));
                    outln!("dead_bytes:        {}", bytes(x.dead_bytes));
                    outln!("page_padding:      {}", bytes(x.page_padding_bytes));
                    outln!("index_bytes:       {}", bytes(x.index_bytes));
                    for e in &x.entries {
                        outln!(
                            "  {:>12} {:>12} seed={:#010x} {}",
                            e.offset,
                            e.size,
                            e.seed,
                            printable(&e.name)
                        );
                    }
                }
                0
            }
        },
        Ok(FileKind::Ptekit) => match open_read_only(path) {
            Err(e) => {
                if json {
                    outln!(
                        "{}",
                        serde_json::json!({"format": "PTKWC", "valid": false, "error": e.to_string()})
                    );
                } else {
                    outln!("format: PTKWC (ptekit)\ninvalid: {e}");
                }
                1
            }
            Ok(cf) => {
                let idx = cf.index();
                let s = idx.summary();
                let mut slots = Vec::new();
                for (i, st) in idx.slots.iter().enumerate() {
                    let v = match st {
                        SlotState::Live(e) | SlotState::Dead(e, _) => {
                            let status = match st {
                                SlotState::Dead(_, r) => {
                                    serde_json::to_value(r).unwrap_or_default()
                                }
                                _ => serde_json::json!("live"),
                            };
                            serde_json::json!({
                                "slot": i, "kind": "entry", "status": status,
                                "offset": e.data_offset, "size": e.data_len,
                                "seed": e.seed, "fingerprint_id": e.fingerprint_id,
                                "kernel_len": e.kernel_len, "bias_len": e.bias_len,
                                "key": hex(&e.key_digest), "key_source": e.kernel_key,
                                "name": e.name, "pid": e.pid,
                            })
                        }
                        SlotState::Reserve {
                            data_offset,
                            data_len,
                            pid,
                        } => serde_json::json!({
                            "slot": i, "kind": "reserve", "offset": data_offset, "size": data_len, "pid": pid,
                        }),
                        SlotState::Drop { slot } => {
                            serde_json::json!({"slot": i, "kind": "drop", "target": slot})
                        }
                        SlotState::Memo {
                            region,
                            content,
                            len,
                        } => serde_json::json!({
                            "slot": i, "kind": "memo", "region": hex(region), "key": hex(content), "size": len,
                        }),
                        SlotState::Link {
                            offset,
                            slots,
                            valid,
                        } => serde_json::json!({
                            "slot": i, "kind": "link", "offset": offset, "slots": slots, "valid": valid,
                        }),
                        SlotState::Torn(e) => {
                            serde_json::json!({"slot": i, "kind": "torn", "error": e.to_string()})
                        }
                    };
                    let mut v = v;
                    if let (Some(o), Ok(n)) = (v.as_object_mut(), u32::try_from(i)) {
                        o.insert("slot_offset".into(), serde_json::json!(idx.slot_offset(n)));
                        if let SlotState::Live(e) | SlotState::Dead(e, _) = st {
                            o.insert("last_use".into(), serde_json::json!(e.last_use));
                        }
                    }
                    slots.push(v);
                }
                if json {
                    outln!(
                        "{}",
                        serde_json::json!({"format": "PTKWC", "valid": true, "summary": s, "slots": slots,
                            "data_offset": idx.header.data_offset, "file_id": hex(&idx.header.file_id)})
                    );
                } else {
                    outln!("format: PTKWC v{} (ptekit)", ptekit_cache::format::VERSION);
                    print_summary(&s);
                    for (i, st) in idx.slots.iter().enumerate() {
                        outln!("  [{i:>5}] {}", slot_text(st));
                    }
                }
                0
            }
        },
    }
}

/// One slot of `cache inspect` text after its number: kind, offset, size, and what
/// else the slot says (a dead entry's reason in words).
fn slot_text(st: &SlotState) -> String {
    let entry = |e: &ptekit_cache::format::Entry| {
        format!(
            "{:>12} {:>12} seed={:#010x} fp={:<4} {}",
            e.data_offset,
            e.data_len,
            e.seed,
            e.fingerprint_id,
            printable(&e.name)
        )
    };
    match st {
        SlotState::Live(e) => format!("live    {}", entry(e)),
        SlotState::Dead(e, r) => format!("dead    {} ({r})", entry(e)),
        SlotState::Reserve {
            data_offset,
            data_len,
            ..
        } => format!("reserve {data_offset:>12} {data_len:>12}"),
        SlotState::Drop { slot } => format!("drop    slot {slot}"),
        SlotState::Memo { region, len, .. } => {
            format!("memo    {:>12} {len:>12} region={}", "", &hex(region)[..16])
        }
        SlotState::Link {
            offset,
            slots,
            valid,
        } => {
            let note = if *valid {
                ""
            } else {
                " (invalid, not followed)"
            };
            format!("link    {offset:>12} {slots:>12} slots{note}")
        }
        SlotState::Torn(e) => format!("torn    {e}"),
    }
}

fn verify(path: &Path, json: bool) -> i32 {
    match verify_file(path) {
        Ok(v) => {
            if json {
                outln!("{}", serde_json::json!({"valid": true, "report": v}));
            } else {
                outln!("ok: {}", path.display());
            }
            0
        }
        Err(reasons) => {
            if json {
                outln!(
                    "{}",
                    serde_json::json!({"valid": false, "reasons": reasons})
                );
            } else {
                // Reasons from opening the file name it already.
                let named = format!("{}: ", path.display());
                for r in &reasons {
                    let r = r.strip_prefix(&named).unwrap_or(r);
                    eprintln!("invalid: {}: {r}", path.display());
                }
            }
            1
        }
    }
}

fn compact(path: &Path, lock_timeout: u64, json: bool) -> i32 {
    match check::file_kind(path) {
        Ok(FileKind::Ptekit) => {}
        Ok(FileKind::Xpwc) => {
            eprintln!(
                "error: {}: XPWC files are read-only here; compact works on ptekit cache files",
                path.display()
            );
            return 1;
        }
        Ok(FileKind::Unknown) => {
            eprintln!("error: {}: not a ptekit cache file", path.display());
            return 1;
        }
        Err(e) => return fail(e),
    }
    let opts = FileOptions {
        lock_timeout: std::time::Duration::from_secs(lock_timeout),
        ..FileOptions::default()
    };
    match store::compact(path, &opts) {
        Ok(r) => {
            if json {
                outln!("{}", serde_json::json!(r));
            } else {
                let a = &r.after;
                outln!(
                    "compacted {}: {} -> {}, kept {} entries, reclaimed {} of dead entries, dropped {} corrupt ({:.1} ms)",
                    path.display(),
                    bytes(r.before.file_bytes),
                    bytes(a.file_bytes),
                    thousands(r.kept),
                    bytes(r.before.dead_bytes),
                    r.dropped_corrupt,
                    r.elapsed_ms
                );
                outln!(
                    "new file: header and index {}, live {}, alignment padding {}",
                    bytes(a.index_region_bytes),
                    bytes(a.live_bytes),
                    bytes(a.padding_bytes)
                );
                if r.before.torn_slots > 0 {
                    outln!(
                        "left out {} torn index slot(s) (their entries, if any, are packed again when used)",
                        thousands(r.before.torn_slots)
                    );
                }
            }
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

fn stats(path: &Path, json: bool) -> i32 {
    match check::file_kind(path) {
        Err(e) => fail(e),
        Ok(FileKind::Unknown) => not_a_cache_file(path),
        Ok(FileKind::Xpwc) => inspect_xpwc_stats(path, json),
        Ok(FileKind::Ptekit) => match open_read_only(path) {
            Err(e) => {
                eprintln!("invalid: {e}");
                1
            }
            Ok(cf) => {
                let s = cf.summary();
                if json {
                    outln!("{}", serde_json::json!(s));
                } else {
                    print_summary(&s);
                }
                0
            }
        },
    }
}

fn inspect_xpwc_stats(path: &Path, json: bool) -> i32 {
    match read_xpwc(path) {
        Err(e) => fail(e),
        Ok(Err(e)) => {
            eprintln!("invalid: {e}");
            1
        }
        Ok(Ok(x)) => {
            if json {
                outln!(
                    "{}",
                    serde_json::json!({"file_bytes": x.file_bytes, "entries": x.entries.len(),
                    "live_bytes": x.live_bytes, "dead_bytes": x.dead_bytes,
                    "page_padding_bytes": x.page_padding_bytes, "index_bytes": x.index_bytes})
                );
            } else {
                outln!("file_bytes:        {}", bytes(x.file_bytes));
                outln!("entries:           {}", thousands(x.entries.len() as u64));
                outln!("live_bytes:        {}", bytes(x.live_bytes));
                outln!("dead_bytes:        {}", bytes(x.dead_bytes));
                outln!("page_padding:      {}", bytes(x.page_padding_bytes));
            }
            0
        }
    }
}

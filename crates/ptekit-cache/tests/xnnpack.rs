//! The cache with the real XNNPACK (ExecuTorch 1.5.1 wheel): cold and warm
//! runs, changed weights, compaction, corrupt files, fallbacks, several
//! processes, and writers killed with SIGKILL.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ptekit_cache::format::{DeadReason, Record, SlotState, DATA_ALIGN};
use ptekit_cache::store::{data_digest, PAGE_ALIGNED_FROM};
use ptekit_cache::xnnpack::{output_sha256, run_demo, DemoModel, Xnnpack};
use ptekit_cache::{CacheFile, CacheOptions, FileOptions, Stats, WeightsCache};

fn model(layers: usize, width: usize, seed: u64, tag: &str) -> DemoModel {
    let mut m = DemoModel::new(layers, width, seed);
    m.tag = tag.to_string();
    m
}

fn uncached(x: &Arc<Xnnpack>, m: &DemoModel) -> Vec<f32> {
    run_demo(x, m, None).expect("uncached run").output
}

fn cached(x: &Arc<Xnnpack>, path: &Path, m: &DemoModel, opts: CacheOptions) -> (Vec<f32>, Stats) {
    let c = WeightsCache::new(Some(path), opts);
    let r = run_demo(x, m, Some(&c)).expect("cached run");
    let s = c.stats();
    (r.output, s)
}

fn ro_open(path: &Path) -> CacheFile {
    CacheFile::open(
        path,
        &FileOptions {
            read_only: true,
            create: false,
            max_file_bytes: 0,
            ..FileOptions::default()
        },
    )
    .expect("open cache read-only")
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).expect("stat").len()
}

#[test]
fn cold_then_warm_matches_uncached_at_default_size() {
    let Some(x) = common::xnn("cold_then_warm_matches_uncached_at_default_size") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("w.pwc");
    let m = model(8, 1024, 1, "warm");
    let reference = uncached(&x, &m);

    let (cold, cs) = cached(&x, &path, &m, CacheOptions::default());
    assert_eq!(cs.misses, 9, "cold run packs all 9 weights: {cs:?}");
    assert_eq!(cs.hits, 0);
    assert_eq!(cs.heap_fallbacks, 0, "{cs:?}");
    assert!(cs.bytes_packed >= 8 * 1024 * 1024 * 4, "{cs:?}");
    assert_eq!(
        cold, reference,
        "cold output differs from XNNPACK without cache"
    );
    let len_after_cold = file_len(&path);

    let (warm, ws) = cached(&x, &path, &m, CacheOptions::default());
    assert_eq!(ws.misses, 0, "warm run must not pack: {ws:?}");
    assert_eq!(ws.hits, 9);
    assert_eq!(ws.bytes_packed, 0);
    assert_eq!(
        ws.bytes_mapped, cs.bytes_packed,
        "warm maps what cold packed"
    );
    assert_eq!(file_len(&path), len_after_cold, "warm run grew the file");
    assert_eq!(
        warm.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        reference.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        "warm output bytes differ from XNNPACK without cache"
    );
    assert!(ptekit_cache::check::verify_file(&path).is_ok());
}

#[test]
fn provider_sees_registered_pointers() {
    let Some(x) = common::xnn("provider_sees_registered_pointers") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (layers, width) = (3, 256);
    let m = model(layers, width, 7, "layout");
    let mut keys = Vec::new();
    for name in ["a.pwc", "b.pwc"] {
        let path = dir.path().join(name);
        let (_, s) = cached(&x, &path, &m, CacheOptions::default());
        // Every look-up carried a registered kernel pointer (offset 8) and a
        // registered bias pointer (offset 16), otherwise it would count as
        // unregistered.
        assert_eq!(s.unregistered_lookups, 0, "{s:?}");
        assert_eq!(s.committed, layers as u64 + 1, "{s:?}");
        let cf = ro_open(&path);
        let mut got: Vec<(u32, u32, u64, Option<u64>)> = cf
            .index()
            .live()
            .map(|(_, e)| (e.seed, e.fingerprint_id, e.kernel_len, e.bias_len))
            .collect();
        got.sort();
        keys.push(got);
    }
    // Sizes recorded from the registrations matched by pointer.
    let sizes: Vec<(u64, Option<u64>)> = keys[0].iter().map(|k| (k.2, k.3)).collect();
    assert!(
        sizes.contains(&((16 * 9 * 16 * 4) as u64, Some(16 * 4))),
        "{sizes:?}"
    );
    assert!(sizes.contains(&((width * 1024 * 4) as u64, Some(width as u64 * 4))));
    assert!(sizes.contains(&((width * width * 4) as u64, Some(width as u64 * 4))));
    // Seed and fingerprint id (offset 24) are deterministic across runs.
    assert_eq!(keys[0], keys[1]);
    let fc_fp: Vec<u32> = keys[0]
        .iter()
        .filter(|k| k.2 != 16 * 9 * 16 * 4)
        .map(|k| k.1)
        .collect();
    assert!(
        fc_fp.windows(2).all(|w| w[0] == w[1]),
        "FC layers share one packing fingerprint: {keys:?}"
    );
    println!("seed/fingerprint per entry: {:?}", keys[0]);
}

#[test]
fn changed_weights_are_repacked_never_stale() {
    let Some(x) = common::xnn("changed_weights_are_repacked_never_stale") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("w.pwc");
    let m1 = model(3, 512, 1, "net");
    let m2 = model(3, 512, 2, "net");
    let r1 = uncached(&x, &m1);
    let r2 = uncached(&x, &m2);
    assert_ne!(r1, r2);
    let (o1, _) = cached(&x, &path, &m1, CacheOptions::default());
    assert_eq!(o1, r1);
    // Same names, same shapes, other bytes: must pack again.
    let (o2, s2) = cached(
        &x,
        &path,
        &m2,
        CacheOptions {
            auto_compact_dead_share: None,
            ..CacheOptions::default()
        },
    );
    assert_eq!(s2.hits, 0, "changed weights must never hit: {s2:?}");
    assert_eq!(s2.misses, 4);
    assert_eq!(o2, r2, "served stale packed weights");
    // The old entries are superseded (same names) and counted dead.
    let cf = ro_open(&path);
    let superseded = cf
        .index()
        .slots
        .iter()
        .filter(|s| matches!(s, SlotState::Dead(_, DeadReason::Superseded { .. })))
        .count();
    assert_eq!(superseded, 4);
    assert!(cf.summary().dead_bytes > 512 * 512 * 4);
    let (o2b, s2b) = cached(&x, &path, &m2, CacheOptions::default());
    assert_eq!((s2b.hits, s2b.misses), (4, 0));
    assert_eq!(o2b, r2);
}

#[test]
fn compaction_keeps_live_entries_and_outputs() {
    let Some(x) = common::xnn("compaction_keeps_live_entries_and_outputs") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("w.pwc");
    let no_auto = || CacheOptions {
        auto_compact_dead_share: None,
        ..CacheOptions::default()
    };
    let a1 = model(3, 512, 1, "a");
    let a2 = model(3, 512, 2, "a");
    let b = model(2, 256, 3, "b");
    cached(&x, &path, &a1, no_auto());
    cached(&x, &path, &b, no_auto());
    // A runtime that keeps using the old file across the compaction.
    let old_cache = WeightsCache::new(Some(&path), no_auto());
    let mut old_run = run_demo(&x, &a1, Some(&old_cache)).expect("run");
    assert_eq!(old_cache.stats().hits, 4);
    cached(&x, &path, &a2, no_auto());
    let before = ro_open(&path).summary();
    assert_eq!(before.live_entries, 4 + 3);
    assert!(before.dead_bytes > 0);

    let report = ptekit_cache::compact(&path, &FileOptions::default()).expect("compact");
    assert_eq!(report.kept, 7);
    assert_eq!(report.after.live_entries, 7);
    assert_eq!(report.after.dead_bytes, 0);
    assert!(report.after.file_bytes < before.file_bytes);
    assert!(ptekit_cache::check::verify_file(&path).is_ok());
    // Only the header, the index and the live bytes, each range placed as a
    // commit places it: on DATA_ALIGN, packs of PAGE_ALIGNED_FROM on a page.
    let placed: u64 = ro_open(&path)
        .index()
        .live()
        .map(|(_, e)| {
            let page = if e.data_len >= PAGE_ALIGNED_FROM {
                4096
            } else {
                0
            };
            e.data_len + DATA_ALIGN + page
        })
        .sum();
    let a = &report.after;
    assert!(a.index_region_bytes <= 2 * 65536, "{a:?}");
    assert!(a.file_bytes <= a.index_region_bytes + placed, "{a:?}");

    // Live entries of both models survive with their outputs.
    for m in [&a2, &b] {
        let (o, s) = cached(&x, &path, m, no_auto());
        assert_eq!(s.misses, 0, "{s:?}");
        assert_eq!(o, uncached(&x, m));
    }
    // The old mapping is still valid after the rename.
    let input = a1.input();
    let mut out = vec![0f32; a1.width + 4];
    old_run
        .runtime
        .run(&[(0, &input)], &mut [(1, &mut out)])
        .expect("rerun");
    out.truncate(a1.width);
    assert_eq!(out, old_run.output);

    // Compaction by `maintain` (dead share over the threshold), never during
    // a load: finalize leaves the dead bytes alone.
    let a3 = model(3, 512, 4, "a");
    let auto = CacheOptions {
        auto_compact_dead_share: Some(0.2),
        auto_compact_min_dead_bytes: 1,
        ..CacheOptions::default()
    };
    let c3 = WeightsCache::new(Some(&path), auto);
    let r3 = run_demo(&x, &a3, Some(&c3)).expect("run");
    let s3 = c3.stats();
    assert_eq!(s3.compactions, 0, "{s3:?}");
    assert!(s3.dead_bytes > 0, "{s3:?}");
    assert!(c3.maintain());
    let s3 = c3.stats();
    assert_eq!(s3.compactions, 1, "{s3:?}");
    assert_eq!(s3.dead_bytes, 0);
    assert_eq!(r3.output, uncached(&x, &a3));
    let (o3, s3) = cached(&x, &path, &a3, CacheOptions::default());
    assert_eq!(s3.misses, 0, "{s3:?}");
    assert_eq!(o3, uncached(&x, &a3));
}

fn flip(path: &Path, at: u64) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open");
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).expect("read");
    b[0] ^= 0x5A;
    f.write_all_at(&b, at).expect("write");
}

#[test]
fn corrupt_and_truncated_files_are_rejected_and_fall_back() {
    let Some(x) = common::xnn("corrupt_and_truncated_files_are_rejected_and_fall_back") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let m = model(3, 512, 5, "c");
    let reference = uncached(&x, &m);
    let base = dir.path().join("base.pwc");
    cached(&x, &base, &m, CacheOptions::default());
    let cf = ro_open(&base);
    let entries: Vec<_> = cf.index().live().map(|(s, e)| (s, e.clone())).collect();
    let header = cf.index().header.clone();
    drop(cf);
    let copy = |name: &str| {
        let p = dir.path().join(name);
        std::fs::copy(&base, &p).expect("copy");
        p
    };

    // 1. Bad header: the file is rejected with a reason, everything packs on the heap.
    let p = copy("header.pwc");
    flip(&p, 3);
    let (o, s) = cached(&x, &p, &m, CacheOptions::default());
    assert_eq!(o, reference);
    assert!(
        s.file_error.as_deref().is_some_and(|e| e.contains("magic")),
        "{s:?}"
    );
    assert_eq!(s.heap_fallbacks, 4);
    assert_eq!(s.heap_fallback_reasons.get("file_unusable"), Some(&4));
    assert!(ptekit_cache::check::verify_file(&p).is_err());

    // 2. A corrupt index record: that entry is ignored (re-packed), the others hit.
    let p = copy("record.pwc");
    let (slot, _) = entries[1];
    flip(&p, header.slot_offset(slot) + 40);
    let reasons = ptekit_cache::check::verify_file(&p).expect_err("verify must fail");
    assert!(
        reasons.iter().any(|r| r.contains("checksum")),
        "{reasons:?}"
    );
    let (o, s) = cached(&x, &p, &m, CacheOptions::default());
    assert_eq!(o, reference);
    assert_eq!((s.hits, s.misses), (3, 1), "{s:?}");

    // 3. Truncated file: entries past the end are rejected; the writer
    //    withdraws them before growing the file, so they never come back.
    let p = copy("trunc.pwc");
    let last = entries
        .iter()
        .map(|(_, e)| e.data_offset)
        .max()
        .expect("entries");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .expect("open")
        .set_len(last + 10)
        .expect("truncate");
    let reasons = ptekit_cache::check::verify_file(&p).expect_err("verify must fail");
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("outside the data region")),
        "{reasons:?}"
    );
    let (o, s) = cached(&x, &p, &m, CacheOptions::default());
    assert_eq!(o, reference);
    assert_eq!(s.misses, 1, "{s:?}");
    let (o, s) = cached(&x, &p, &m, CacheOptions::default());
    assert_eq!(o, reference);
    assert_eq!((s.hits, s.misses), (4, 0), "{s:?}");
    let cf = ro_open(&p);
    assert!(cf
        .index()
        .slots
        .iter()
        .any(|s| matches!(s, SlotState::Dead(_, DeadReason::Dropped { .. }))));
    assert!(cf
        .index()
        .slots
        .iter()
        .any(|s| matches!(s, SlotState::Drop { .. })));

    // 4. Corrupt packed bytes: caught by verify_on_load and by `verify`.
    let p = copy("data.pwc");
    let (_, e) = &entries[2];
    flip(&p, e.data_offset + e.data_len / 2);
    assert!(ptekit_cache::check::verify_file(&p)
        .expect_err("verify must fail")
        .iter()
        .any(|r| r.contains("digest")));
    let (o, s) = cached(
        &x,
        &p,
        &m,
        CacheOptions {
            verify_on_load: true,
            ..CacheOptions::default()
        },
    );
    assert_eq!(o, reference);
    assert_eq!(s.rejected_entries, 1, "{s:?}");

    // 5. Empty and garbage files.
    for (name, bytes) in [("empty.pwc", Vec::new()), ("junk.pwc", vec![7u8; 100_000])] {
        let p = dir.path().join(name);
        std::fs::write(&p, &bytes).expect("write");
        let (o, s) = cached(&x, &p, &m, CacheOptions::default());
        assert_eq!(o, reference);
        assert!(s.file_error.is_some());
        assert_eq!(s.heap_fallbacks, 4);
        assert_eq!(
            std::fs::read(&p).expect("read"),
            bytes,
            "an invalid file must not be overwritten"
        );
    }
}

#[test]
fn heap_fallbacks_are_counted_with_reasons() {
    let Some(x) = common::xnn("heap_fallbacks_are_counted_with_reasons") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let m = model(2, 256, 9, "f");
    let reference = uncached(&x, &m);
    // No path.
    let c = WeightsCache::new(None, CacheOptions::default());
    let r = run_demo(&x, &m, Some(&c)).expect("run");
    assert_eq!(r.output, reference);
    assert_eq!(c.stats().heap_fallback_reasons.get("no_path"), Some(&3));
    // Read-only.
    let path = dir.path().join("w.pwc");
    cached(
        &x,
        &path,
        &model(1, 64, 1, "other"),
        CacheOptions::default(),
    );
    let len = file_len(&path);
    let mut ro = CacheOptions::default();
    ro.file.read_only = true;
    let (o, s) = cached(&x, &path, &m, ro);
    assert_eq!(o, reference);
    assert_eq!(s.heap_fallback_reasons.get("read_only"), Some(&3), "{s:?}");
    assert_eq!(file_len(&path), len);
    // Lock held by someone else: wait, then fall back.
    let holder = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .expect("open");
    assert!(ptekit_cache::sys::lock_exclusive(&holder, Duration::from_secs(1)).expect("lock"));
    let mut short = CacheOptions::default();
    short.file.lock_timeout = Duration::from_millis(50);
    let (o, s) = cached(&x, &path, &m, short);
    assert_eq!(o, reference);
    assert_eq!(
        s.heap_fallback_reasons.get("lock_timeout"),
        Some(&3),
        "{s:?}"
    );
    ptekit_cache::sys::unlock(&holder);
    // Unregistered buffers: no registration at all.
    let c = WeightsCache::new(Some(&path), CacheOptions::default());
    let sg = m.subgraph(&x).expect("subgraph");
    let mut rt = ptekit_cache::xnnpack::Runtime::create(&sg, Some(&c)).expect("runtime");
    let input = m.input();
    let mut out = vec![0f32; m.width + 4];
    rt.run(&[(0, &input)], &mut [(1, &mut out)]).expect("run");
    out.truncate(m.width);
    assert_eq!(out, reference);
    let s = c.stats();
    assert_eq!(s.unregistered_lookups, 3);
    assert_eq!(s.heap_fallback_reasons.get("unregistered"), Some(&3));
}

// ---- several processes ----------------------------------------------------

const CHILD_ENV: &str = "PTEKIT_CACHE_TEST_CHILD";

fn spawn_child(mode: &str, vars: &[(&str, String)]) -> std::process::Child {
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = Command::new(exe);
    cmd.args(["child_worker", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, mode)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn child")
}

fn env_u64(k: &str, d: u64) -> u64 {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

/// Child process body; a no-op unless started by a test with `CHILD_ENV`.
#[test]
fn child_worker() {
    let Ok(mode) = std::env::var(CHILD_ENV) else {
        return;
    };
    let x = common::xnn("child_worker").expect("xnnpack in child");
    let path = PathBuf::from(std::env::var("CHILD_CACHE").expect("CHILD_CACHE"));
    let layers = env_u64("CHILD_LAYERS", 2) as usize;
    let width = env_u64("CHILD_WIDTH", 128) as usize;
    let tag = std::env::var("CHILD_TAG").unwrap_or_else(|_| "k".into());
    match mode.as_str() {
        "once" => {
            let m = model(layers, width, env_u64("CHILD_SEED", 1), &tag);
            let (o, s) = cached(&x, &path, &m, CacheOptions::default());
            println!(
                "RESULT {}",
                serde_json::json!({"sha": output_sha256(&o), "stats": s})
            );
        }
        "loop" => {
            let base = env_u64("CHILD_SEED", 1);
            for i in 0.. {
                let m = model(layers, width, base + i, &tag);
                let c = WeightsCache::new(Some(&path), CacheOptions::default());
                run_demo(&x, &m, Some(&c)).expect("run");
                println!("DONE {}", base + i);
            }
        }
        other => panic!("unknown child mode {other}"),
    }
}

#[test]
fn four_processes_share_one_file() {
    let Some(x) = common::xnn("four_processes_share_one_file") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("shared.pwc");
    let (layers, width) = (3, 384);
    let specs = [("a", 11u64), ("a", 11), ("b", 12), ("b", 12)];
    let expected: HashMap<&str, String> = specs
        .iter()
        .map(|(t, s)| {
            (
                *t,
                output_sha256(&uncached(&x, &model(layers, width, *s, t))),
            )
        })
        .collect();
    let children: Vec<_> = specs
        .iter()
        .map(|(t, s)| {
            spawn_child(
                "once",
                &[
                    ("CHILD_CACHE", path.display().to_string()),
                    ("CHILD_LAYERS", layers.to_string()),
                    ("CHILD_WIDTH", width.to_string()),
                    ("CHILD_SEED", s.to_string()),
                    ("CHILD_TAG", t.to_string()),
                ],
            )
        })
        .collect();
    let mut committed = 0;
    let mut deduplicated = 0;
    for ((tag, _), child) in specs.iter().zip(children) {
        let out = child.wait_with_output().expect("wait");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "child failed: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = stdout
            .lines()
            .find_map(|l| l.split_once("RESULT ").map(|(_, r)| r))
            .expect("result line");
        let v: serde_json::Value = serde_json::from_str(line).expect("json");
        assert_eq!(
            v["sha"].as_str(),
            Some(expected[tag].as_str()),
            "{tag}: {v}"
        );
        assert_eq!(v["stats"]["heap_fallbacks"], 0, "{v}");
        committed += v["stats"]["committed"].as_u64().unwrap_or(0);
        deduplicated += v["stats"]["deduplicated"].as_u64().unwrap_or(0);
    }
    let cf = ro_open(&path);
    let s = cf.summary();
    assert_eq!(s.live_entries, 2 * (layers as u64 + 1), "{s:?}");
    assert_eq!(
        committed, s.live_entries,
        "each key committed once (deduplicated {deduplicated})"
    );
    assert_eq!(s.dead_entries, 0);
    assert!(ptekit_cache::check::verify_file(&path).is_ok());
    // Both models are now warm in a fifth process (this one).
    for (t, sd) in [("a", 11), ("b", 12)] {
        let m = model(layers, width, sd, t);
        let (o, st) = cached(&x, &path, &m, CacheOptions::default());
        assert_eq!(st.misses, 0);
        assert_eq!(output_sha256(&o), expected[t]);
    }
}

#[test]
fn writers_killed_with_sigkill_never_corrupt_or_lose_entries() {
    let Some(x) = common::xnn("writers_killed_with_sigkill_never_corrupt_or_lose_entries") else {
        return;
    };
    let kills = env_u64("PTEKIT_KILL_ITERATIONS", 100);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("killed.pwc");
    // Every record ever seen, by slot: a slot once written never changes, and
    // every entry's packed bytes keep matching their digest.
    let mut seen: HashMap<u32, Record> = HashMap::new();
    let mut file_id = None;
    let mut prev_live: Vec<(String, [u8; 32])> = Vec::new();
    let mut compactions = 0;
    let mut rng = 0x243F_6A88_85A3_08D3u64;
    let started = Instant::now();
    let mut completed_runs = 0u64;
    for k in 0..kills {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let delay = Duration::from_micros(20_000 + rng % 120_000);
        let mut child = spawn_child(
            "loop",
            &[
                ("CHILD_CACHE", path.display().to_string()),
                ("CHILD_LAYERS", "2".into()),
                ("CHILD_WIDTH", "256".into()),
                ("CHILD_SEED", (1 + k * 1000).to_string()),
                ("CHILD_TAG", format!("m{}", k % 3)),
            ],
        );
        std::thread::sleep(delay);
        child.kill().expect("SIGKILL");
        let out = child.wait_with_output().expect("wait");
        completed_runs += String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains("DONE "))
            .count() as u64;
        if !path.exists() {
            continue;
        }
        let cf = ro_open(&path);
        let idx = cf.index();
        assert!(
            ptekit_cache::store::torn_slots(idx).is_empty(),
            "kill {k}: torn slot after SIGKILL"
        );
        let live: Vec<(String, [u8; 32])> = idx
            .live()
            .map(|(_, e)| (e.name.clone(), e.key_digest))
            .collect();
        if file_id.is_some_and(|id| id != idx.header.file_id) {
            // An automatic compaction replaced the file: every entry live
            // before is still live, or its name now has a newer live entry.
            compactions += 1;
            for (name, key) in &prev_live {
                assert!(
                    live.contains(&(name.clone(), *key)) || live.iter().any(|(n, _)| n == name),
                    "kill {k}: compaction lost live entry {name}"
                );
            }
            seen.clear();
        }
        file_id = Some(idx.header.file_id);
        prev_live = live;
        for (slot, st) in idx.slots.iter().enumerate() {
            let rec = match st {
                SlotState::Live(e) | SlotState::Dead(e, _) => {
                    assert!(
                        !matches!(
                            st,
                            SlotState::Dead(
                                _,
                                DeadReason::OutOfBounds | DeadReason::Overlap { .. }
                            )
                        ),
                        "kill {k}: invalid entry in slot {slot}: {st:?}"
                    );
                    let bytes = cf.entry_bytes(e).expect("entry in bounds");
                    assert_eq!(
                        data_digest(bytes),
                        e.data_digest,
                        "kill {k}: slot {slot} bytes changed"
                    );
                    // The last-use time is the one field rewritten in place.
                    Record::Entry(ptekit_cache::format::Entry {
                        last_use: 0,
                        ..e.clone()
                    })
                }
                SlotState::Reserve {
                    data_offset,
                    data_len,
                    pid,
                } => Record::Reserve {
                    data_offset: *data_offset,
                    data_len: *data_len,
                    pid: *pid,
                },
                SlotState::Drop { slot } => Record::Drop {
                    slot: *slot,
                    pid: 0,
                },
                SlotState::Memo {
                    region,
                    content,
                    len,
                } => Record::Memo {
                    region: *region,
                    content: *content,
                    len: *len,
                    pid: 0,
                },
                SlotState::Link { offset, slots, .. } => Record::Link {
                    offset: *offset,
                    slots: *slots,
                    pid: 0,
                },
                SlotState::Torn(_) => unreachable!(),
            };
            if let Some(prev) = seen.get(&(slot as u32)) {
                if !matches!(rec, Record::Drop { .. }) {
                    assert_eq!(prev, &rec, "kill {k}: slot {slot} rewritten");
                }
            }
            seen.insert(slot as u32, rec);
        }
        assert!(idx.slots.len() >= seen.len(), "kill {k}: index shrank");
    }
    let entries = seen
        .values()
        .filter(|r| matches!(r, Record::Entry(_)))
        .count();
    println!(
        "{kills} kills in {:.1}s, {completed_runs} runs completed, {compactions} compactions seen, {} slots, {entries} entries",
        started.elapsed().as_secs_f64(),
        seen.len()
    );
    assert!(entries > 0, "no entry was ever committed");
    assert!(ptekit_cache::check::verify_file(&path).is_ok());
    // The surviving file still serves correct weights: a committed model is warm.
    let m = model(2, 256, 424_242, "final");
    let (o1, s1) = cached(&x, &path, &m, CacheOptions::default());
    let (o2, s2) = cached(&x, &path, &m, CacheOptions::default());
    assert_eq!(s1.misses, 3);
    assert_eq!((s2.hits, s2.misses), (3, 0));
    assert_eq!(o1, uncached(&x, &m));
    assert_eq!(o2, o1);
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|f| f.to_bits()).collect()
}

#[test]
fn background_commit_maps_the_file_under_a_live_runtime() {
    let Some(x) = common::xnn("background_commit_maps_the_file_under_a_live_runtime") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bg.pwc");
    let m = model(4, 1024, 11, "bg");
    let reference = uncached(&x, &m);
    let opts = || CacheOptions {
        background_commit: true,
        ..CacheOptions::default()
    };
    let c = WeightsCache::new(Some(&path), opts());
    let mut run = run_demo(&x, &m, Some(&c)).expect("cold run");
    assert_eq!(bits(&run.output), bits(&reference));
    // finalize returned before anything was written.
    assert_eq!(c.stats().committed, 0);
    assert!(ptekit_cache::provider::flush_background(
        Duration::from_secs(300)
    ));
    let bg = ptekit_cache::provider::background_stats();
    assert!(
        bg.committed >= 5 && bg.failed == 0 && bg.pending == 0,
        "{bg:?}"
    );
    // The 1024x1024 packs were replaced in place by the committed file pages.
    assert!(bg.bytes_remapped >= 4 * 1024 * 1024 * 3, "{bg:?}");
    // The same runtime runs on those pages and still gives the same bits.
    let mut out = vec![0f32; m.width + ptekit_cache::xnnpack::EXTRA_BYTES / 4];
    run.runtime
        .run(&[(0, &m.input())], &mut [(1, &mut out)])
        .expect("run after the commit");
    out.truncate(m.width);
    assert_eq!(bits(&out), bits(&reference));
    drop(run);
    drop(c);
    let (warm, ws) = cached(&x, &path, &m, opts());
    assert_eq!((ws.hits, ws.misses), (5, 0), "{ws:?}");
    assert_eq!(bits(&warm), bits(&reference));
    assert!(ptekit_cache::check::verify_file(&path).is_ok());
}

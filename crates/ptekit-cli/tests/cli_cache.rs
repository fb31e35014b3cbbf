//! `ptekit cache inspect|verify|stats|compact`: exit codes on ptekit's own cache files
//! and on the reference runtime's XPWC v2 files (built by the cache crate's writers).

mod common;

use std::os::unix::fs::FileExt;

use common::{add_entry, cache_entry, make_cache, run, stdout_of};
use ptekit_cache::format::{align_up, DATA_ALIGN};
use ptekit_cache::{xpwc, CacheFile, FileOptions};

fn code(args: &[&str]) -> i32 {
    run(args).status.code().expect("exit code")
}

#[test]
fn cache_commands_on_ptekit_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("c.pwc");
    make_cache(&p);
    let f = p.to_str().expect("utf-8 path");
    assert_eq!(code(&["cache", "verify", "--json", f]), 0);
    assert_eq!(code(&["cache", "inspect", "--json", f]), 0);
    assert_eq!(code(&["cache", "inspect", f]), 0);
    assert_eq!(code(&["cache", "stats", f]), 0);
    let mut cf = CacheFile::open(&p, &FileOptions::default()).expect("open");
    assert!(cf.lock().expect("lock"));
    cf.reserve(5000).expect("reserve");
    drop(cf);
    let before = std::fs::metadata(&p).expect("stat").len();
    let out = stdout_of(&["cache", "compact", "--json", "--lock-timeout", "5", f]);
    let r: serde_json::Value = serde_json::from_slice(&out).expect("compact --json");
    assert_eq!(code(&["cache", "verify", f]), 0);
    // The new file holds the header and index and the two live entries of 700
    // bytes (each range starts on DATA_ALIGN), nothing more: the old one had
    // grown by a 1 MiB extent for the reservation.
    let after = std::fs::metadata(&p).expect("stat").len();
    let field = |side: &str, k: &str| r[side][k].as_u64().expect("number");
    assert_eq!(field("before", "file_bytes"), before);
    assert_eq!(field("after", "file_bytes"), after);
    assert_eq!(field("after", "live_bytes"), 1400);
    let overhead = field("after", "index_region_bytes");
    assert!(overhead <= 2 * 65536, "{r}");
    assert_eq!(
        after,
        overhead + align_up(700, DATA_ALIGN).expect("fits") + 700
    );
    assert!(before > (1 << 20) && after < before, "{before} -> {after}");
    let text = stdout_of(&["cache", "stats", f]);
    let want = format!(
        "header_and_index:  {}",
        ptekit_format::units::bytes(overhead)
    );
    assert!(String::from_utf8_lossy(&text).contains(&want), "{want}");
    let text = stdout_of(&["cache", "inspect", f]);
    let want = format!("format: PTKWC v{} (ptekit)", ptekit_cache::format::VERSION);
    assert!(String::from_utf8_lossy(&text).starts_with(&want), "{want}");
    // A cut header: one line naming the file once, the offset and what is missing.
    let bytes = std::fs::read(&p).expect("read");
    std::fs::write(&p, &bytes[..50]).expect("cut");
    let out = run(&["cache", "verify", f]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let want = format!("invalid: {f}: header truncated at offset 0: need 128 bytes, have 50\n");
    assert_eq!(err, want);
}

#[test]
fn cache_commands_on_xpwc_files() {
    let img = xpwc::build(
        &[
            ("fc0.weightfc0.bias".into(), vec![1u8; 5000], 0xABCD),
            ("conv.weight".into(), vec![3u8; 100], 0x1234),
        ],
        2,
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("ref.xpwc");
    std::fs::write(&p, &img).expect("write");
    let f = p.to_str().expect("utf-8 path");
    assert_eq!(code(&["cache", "inspect", f]), 0);
    assert_eq!(code(&["cache", "verify", f]), 0);
    assert_eq!(code(&["cache", "stats", "--json", f]), 0);
    // XPWC files are read-only here.
    assert_eq!(code(&["cache", "compact", "--lock-timeout", "1", f]), 1);

    // A short index: the footer claims one more entry than is there.
    let mut short = img.clone();
    let n = short.len();
    let count = u32::from_le_bytes(short[n - 12..n - 8].try_into().expect("4 bytes"));
    short[n - 12..n - 8].copy_from_slice(&(count + 1).to_le_bytes());
    std::fs::write(&p, &short).expect("write");
    assert_eq!(code(&["cache", "verify", f]), 1);

    let empty = dir.path().join("empty");
    std::fs::write(&empty, b"").expect("write");
    assert_eq!(
        code(&["cache", "verify", empty.to_str().expect("utf-8")]),
        1
    );
    // An unreadable input is exit 2.
    let missing = dir.path().join("missing");
    assert_eq!(
        code(&["cache", "stats", missing.to_str().expect("utf-8")]),
        2
    );
}

/// The cache commands on a pipe whose reader has gone: a quiet exit (141), never the
/// `println!` panic (exit 101).
#[test]
fn cache_commands_on_closed_stdout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("c.pwc");
    make_cache(&p);
    let x = dir.path().join("ref.xpwc");
    std::fs::write(&x, xpwc::build(&[("w".into(), vec![1u8; 300], 1)], 0)).expect("write");
    for file in [&p, &x] {
        for args in [
            &["cache", "inspect", "--json"][..],
            &["cache", "inspect"],
            &["cache", "stats"],
            &["cache", "verify", "--json"],
        ] {
            let mut all: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
            all.push(file.as_os_str());
            common::assert_quiet_on_closed_stdout(&all);
        }
    }
}

/// Runs the read-only cache commands (and `compact` on ptekit files) 50 times each while
/// another thread keeps truncating and restoring the file: no run may die by a signal
/// (before, the XPWC reader mapped the file and died with SIGBUS when the index it was
/// reading was cut off).
#[test]
fn cache_commands_survive_truncation() {
    use std::os::unix::process::ExitStatusExt;
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().expect("tempdir");
    let ptk = dir.path().join("c.pwc");
    make_cache(&ptk);
    let ptk_image = std::fs::read(&ptk).expect("read");
    let xp = dir.path().join("ref.xpwc");
    // 8,000 entries with long names: a 2.2 MB index that takes the parser a while.
    let entries: Vec<(String, Vec<u8>, u32)> = (0..8000u32)
        .map(|i| (format!("{i:0>256}"), vec![1; 16], i))
        .collect();
    let xp_image = xpwc::build(&entries, 0);
    for (path, image, commands) in [
        (
            &xp,
            &xp_image,
            &[
                &["cache", "verify"][..],
                &["cache", "inspect", "--json"],
                &["cache", "stats"],
            ][..],
        ),
        (
            &ptk,
            &ptk_image,
            &[
                &["cache", "verify"][..],
                &["cache", "inspect", "--json"],
                &["cache", "stats"],
                &["cache", "compact", "--lock-timeout", "5"],
            ][..],
        ),
    ] {
        std::fs::write(path, image).expect("write");
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                // Cut the file at a varying page in its second half, then restore it.
                let len = image.len() as u64;
                let mut page = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    page = (page * 7 + 13) % (len / 2 / 4096).max(1);
                    let cut = len / 2 + page * 4096;
                    // compact may have replaced the file: write to whatever is there now.
                    if let Ok(f) = std::fs::OpenOptions::new().write(true).open(path) {
                        let _ = f.set_len(cut);
                        let _ = f.write_all_at(&image[cut as usize..], cut);
                    }
                }
            });
            for _ in 0..50 {
                for args in commands {
                    let mut all: Vec<&std::ffi::OsStr> =
                        args.iter().map(std::ffi::OsStr::new).collect();
                    all.push(path.as_os_str());
                    let out = common::ptekit(&all);
                    assert_eq!(
                        out.status.signal(),
                        None,
                        "{all:?} died: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                    assert!(
                        matches!(out.status.code(), Some(0..=2)),
                        "{all:?}: {:?}",
                        out.status
                    );
                }
            }
            stop.store(true, Ordering::Relaxed);
        });
    }
}

/// A dead entry's reason in plain words in `inspect` and `verify` text (was the Debug
/// form, `Superseded { by_slot: 4 }`); `inspect --json` keeps the machine names.
#[test]
fn dead_entries_say_why_in_words() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("c.pwc");
    make_cache(&p);
    let f = p.to_str().expect("utf-8 path");
    let slot_of = |v: &serde_json::Value, name: &str| {
        v["slots"]
            .as_array()
            .expect("slots")
            .iter()
            .find(|s| s["name"] == name && s["status"] == "live")
            .map(|s| {
                (
                    s["slot"].as_u64().expect("slot"),
                    s["offset"].as_u64().expect("offset"),
                )
            })
            .expect("live entry")
    };
    let before: serde_json::Value =
        serde_json::from_slice(&stdout_of(&["cache", "inspect", "--json", f])).expect("json");
    let (old0, _) = slot_of(&before, "layer0.weight");
    let (_, off1) = slot_of(&before, "layer1.weight");
    // layer1's bytes lie in its reservation's range (the entry sits on it).
    let reserve1 = before["slots"]
        .as_array()
        .expect("slots")
        .iter()
        .find(|s| s["kind"] == "reserve" && s["offset"] == off1)
        .and_then(|s| s["slot"].as_u64())
        .expect("reservation of layer1");
    let mut cf = CacheFile::open(
        &p,
        &FileOptions {
            durable: false,
            ..FileOptions::default()
        },
    )
    .expect("open");
    assert!(cf.lock().expect("lock"));
    // layer0 packed again (another key): the first one is replaced.
    let new0 = add_entry(&mut cf, &p, "layer0.weight", 9, &[9u8; 700]);
    // A record claiming part of layer1's bytes under another name: an invalid overlap.
    let stray = off1 + DATA_ALIGN;
    let bad = cf
        .commit(cache_entry("stray", 10, stray, &[2u8; 500]))
        .expect("commit");
    cf.unlock();
    drop(cf);
    let text = String::from_utf8_lossy(&stdout_of(&["cache", "inspect", f])).into_owned();
    let want = format!("layer0.weight (replaced by slot {new0}: same name, seed and fingerprint)");
    assert!(text.contains(&want), "{want}\n{text}");
    let want = format!("stray (range overlaps the range of slot {reserve1})");
    assert!(text.contains(&want), "{want}\n{text}");
    let out = run(&["cache", "verify", f]);
    assert_eq!(out.status.code(), Some(1));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let want = format!(
        "slot {bad}: entry at {stray}+500 invalid: range overlaps the range of slot {reserve1}"
    );
    assert!(all.contains(&want), "{want}\n{all}");
    let v: serde_json::Value =
        serde_json::from_slice(&stdout_of(&["cache", "inspect", "--json", f])).expect("json");
    let status = |slot: u64| v["slots"][slot as usize]["status"].clone();
    assert_eq!(
        status(old0),
        serde_json::json!({"superseded": {"by_slot": new0}})
    );
    assert_eq!(
        status(u64::from(bad)),
        serde_json::json!({"overlap": {"with_slot": reserve1}})
    );
}

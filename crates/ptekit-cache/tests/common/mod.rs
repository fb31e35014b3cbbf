//! Shared helpers: finding (and fetching) the real XNNPACK.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use ptekit_cache::xnnpack::{default_lib_dir, lib_dir_complete, Xnnpack};

fn fetch() -> Option<PathBuf> {
    let dir = default_lib_dir();
    if lib_dir_complete(&dir) {
        return Some(dir);
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/fetch-xnnpack.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "fetch-xnnpack.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    lib_dir_complete(&dir).then_some(dir)
}

/// The loaded XNNPACK, or `None` after printing `skipped:` (fails the test
/// instead when `PTEKIT_REQUIRE_REFERENCE=1`).
pub fn xnn(test: &str) -> Option<Arc<Xnnpack>> {
    static X: OnceLock<Result<Arc<Xnnpack>, String>> = OnceLock::new();
    let r = X.get_or_init(|| match fetch() {
        None => Err(format!(
            "XNNPACK libraries not found in {} (set PTEKIT_XNNPACK_LIB or run scripts/fetch-xnnpack.sh)",
            default_lib_dir().display()
        )),
        Some(d) => Xnnpack::load(&d).map_err(|e| e.to_string()),
    });
    match r {
        Ok(x) => Some(x.clone()),
        Err(e) => {
            if std::env::var("PTEKIT_REQUIRE_REFERENCE").as_deref() == Ok("1") {
                panic!("{test}: reference XNNPACK required (PTEKIT_REQUIRE_REFERENCE=1): {e}");
            }
            println!("skipped: {test}: {e}");
            None
        }
    }
}

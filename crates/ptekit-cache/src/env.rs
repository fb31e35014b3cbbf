//! The environment packed bytes are valid for: the XNNPACK build that packed
//! them and the CPU features it chose its microkernels by. Its digest is in
//! every cache file header; a file from another environment is never served.

/// Identity of a packing environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvIdentity {
    /// Human-readable summary (build identity prefix and CPU model).
    pub description: String,
    /// BLAKE3 of the build identity and the CPU feature list.
    pub digest: [u8; 32],
}

impl Default for EnvIdentity {
    /// The CPU features of this machine with an unspecified XNNPACK build
    /// (for callers that load XNNPACK themselves and cannot name the build).
    fn default() -> Self {
        static DEFAULT: std::sync::OnceLock<EnvIdentity> = std::sync::OnceLock::new();
        DEFAULT
            .get_or_init(|| EnvIdentity::new(b"unspecified XNNPACK build"))
            .clone()
    }
}

impl EnvIdentity {
    /// The environment of XNNPACK build `build` (for instance the bytes of
    /// `xnn_experimental_get_build_identifier_data`) on this CPU.
    pub fn new(build: &[u8]) -> EnvIdentity {
        let cpu = cpu_features();
        let mut h = blake3::Hasher::new();
        h.update(b"ptekit packing environment v1\0");
        h.update(&(build.len() as u64).to_le_bytes());
        h.update(build);
        h.update(cpu.as_bytes());
        let digest = *h.finalize().as_bytes();
        let b: String = build.iter().take(8).map(|x| format!("{x:02x}")).collect();
        EnvIdentity {
            description: format!("build {b}, {} CPU features", std::env::consts::ARCH),
            digest,
        }
    }
}

/// The CPU feature list the kernel reports (`flags` on x86, `Features` on
/// Arm, first processor), with the architecture name; the architecture alone
/// where `/proc/cpuinfo` is unreadable. Read once per process (XNNPACK, too,
/// picks its microkernels once per process) and only up to the first
/// processor's feature line: the kernel formats the other processors' records
/// only when they are read.
pub fn cpu_features() -> String {
    static FEATURES: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    FEATURES
        .get_or_init(|| {
            let flags = first_feature_line().unwrap_or_default();
            let mut sorted: Vec<&str> = flags.split_whitespace().collect();
            sorted.sort_unstable();
            format!("{}: {}", std::env::consts::ARCH, sorted.join(" "))
        })
        .clone()
}

/// The value of the first `flags` / `Features` line of `/proc/cpuinfo`.
fn first_feature_line() -> Option<String> {
    use std::io::Read;
    let mut f = std::fs::File::open("/proc/cpuinfo").ok()?;
    let mut text: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = f.read(&mut chunk).ok()?;
        text.extend_from_slice(chunk.get(..n)?);
        let complete = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let found = String::from_utf8_lossy(&text[..complete])
            .lines()
            .find(|l| l.starts_with("flags") || l.starts_with("Features"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string());
        if found.is_some() || n == 0 {
            return found;
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn first_feature_line_is_the_first_of_the_whole_file() {
        let whole = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let expected = whole
            .lines()
            .find(|l| l.starts_with("flags") || l.starts_with("Features"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string());
        assert_eq!(super::first_feature_line(), expected);
        // Cached per process: the same string twice.
        assert_eq!(super::cpu_features(), super::cpu_features());
        assert!(super::cpu_features().starts_with(std::env::consts::ARCH));
    }
}

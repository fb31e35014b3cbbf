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
        EnvIdentity::new(b"unspecified XNNPACK build")
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
/// where `/proc/cpuinfo` is unreadable.
pub fn cpu_features() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let flags = info
        .lines()
        .find(|l| l.starts_with("flags") || l.starts_with("Features"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default();
    let mut sorted: Vec<&str> = flags.split_whitespace().collect();
    sorted.sort_unstable();
    format!("{}: {}", std::env::consts::ARCH, sorted.join(" "))
}

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

/// The CPU features XNNPACK chooses its microkernels by, with the
/// architecture name. Computed once per process (XNNPACK, too, detects them
/// once per process).
///
/// On x86-64 these are the words XNNPACK's `cpuinfo` reads with `cpuid`
/// and `xgetbv`: vendor, family and model, the feature leaves 1, 7 (sub-leaves
/// 0 and 1) and 0x8000_0001, and the register state the OS enables (XCR0),
/// which decides whether AVX / AVX-512 may be used at all; no per-core field
/// (APIC ids) is included. Elsewhere: the `flags` / `Features` line of the
/// first processor in `/proc/cpuinfo` (the architecture alone where it is
/// unreadable).
pub fn cpu_features() -> String {
    static FEATURES: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    FEATURES.get_or_init(detect_features).clone()
}

#[cfg(target_arch = "x86_64")]
fn detect_features() -> String {
    let mut s = String::from("x86_64 cpuid:");
    for (k, v) in cpuid_words() {
        s.push_str(&format!(" {k}={v:08x}"));
    }
    // OSXSAVE (leaf 1 ECX bit 27): the OS enabled xgetbv.
    if cpuid_word("1.c").is_some_and(|c| c & (1 << 27) != 0) {
        s.push_str(&format!(" xcr0={:016x}", xcr0()));
    }
    s
}

#[cfg(target_arch = "x86_64")]
fn cpuid_word(name: &str) -> Option<u32> {
    cpuid_words()
        .into_iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The `cpuid` words of [`cpu_features`], named leaf.sub-leaf.register.
#[cfg(target_arch = "x86_64")]
fn cpuid_words() -> Vec<(&'static str, u32)> {
    use std::arch::x86_64::__cpuid_count;
    let l0 = __cpuid_count(0, 0);
    let ext = __cpuid_count(0x8000_0000, 0).eax;
    let l1 = __cpuid_count(1, 0);
    let mut words: Vec<(&str, u32)> = vec![
        ("vendor.b", l0.ebx),
        ("vendor.d", l0.edx),
        ("vendor.c", l0.ecx),
        // Family, model and type; the stepping (bits 0-3) left out.
        ("1.a", l1.eax & !0xf),
        ("1.c", l1.ecx),
        ("1.d", l1.edx),
    ];
    if l0.eax >= 7 {
        let l7 = __cpuid_count(7, 0);
        words.extend([("7.0.b", l7.ebx), ("7.0.c", l7.ecx), ("7.0.d", l7.edx)]);
        words.push(("7.1.a", __cpuid_count(7, 1).eax));
    }
    if ext >= 0x8000_0001 {
        let e1 = __cpuid_count(0x8000_0001, 0);
        words.extend([("e1.c", e1.ecx), ("e1.d", e1.edx)]);
    }
    words
}

#[cfg(target_arch = "x86_64")]
#[allow(
    unsafe_code,
    reason = "xgetbv is an intrinsic of the xsave target feature"
)]
fn xcr0() -> u64 {
    // SAFETY: called only when cpuid reports OSXSAVE, i.e. the processor
    // has xgetbv and the OS enabled it.
    unsafe { std::arch::x86_64::_xgetbv(0) }
}

#[cfg(not(target_arch = "x86_64"))]
fn detect_features() -> String {
    let flags = first_feature_line().unwrap_or_default();
    let mut sorted: Vec<&str> = flags.split_whitespace().collect();
    sorted.sort_unstable();
    format!("{}: {}", std::env::consts::ARCH, sorted.join(" "))
}

/// The value of the first `flags` / `Features` line of `/proc/cpuinfo`,
/// read only that far (the kernel formats the other processors' records
/// only when they are read).
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
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
        #[cfg(target_arch = "x86_64")]
        {
            // The words agree with what the kernel reports for features
            // XNNPACK picks kernels by.
            let flags: Vec<String> = expected
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_string)
                .collect();
            for (flag, word, bit) in [
                ("sse4_1", "1.c", 19),
                ("sse4_2", "1.c", 20),
                ("avx", "1.c", 28),
                ("fma", "1.c", 12),
                ("f16c", "1.c", 29),
                ("avx2", "7.0.b", 5),
                ("avx512f", "7.0.b", 16),
                ("avx512bw", "7.0.b", 30),
                ("avx512_vnni", "7.0.c", 11),
            ] {
                let w = super::cpuid_word(word).unwrap_or(0);
                assert_eq!(
                    flags.iter().any(|f| f == flag),
                    w & (1 << bit) != 0,
                    "{flag}: cpuid {word} bit {bit}"
                );
            }
        }
        assert_eq!(super::cpu_features(), super::cpu_features());
        assert!(super::cpu_features().starts_with(std::env::consts::ARCH));
    }
}

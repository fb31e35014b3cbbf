//! The data a program expects from outside the file: constant tensors stored externally
//! (`extra_tensor_info.location == EXTERNAL`, looked up by their fully qualified name in
//! a `.ptd`), plus named-data keys that delegates read and the program does not hold
//! (added by the layers that decode payloads); and whether a given data file has them.

use serde::Serialize;

use super::method::tensor_nbytes;
use crate::program::{KernelTypes, Program, TensorDataLocation};

/// One key the program expects from outside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExternalKey {
    /// The key (a tensor's fully qualified name, or a named-data key).
    pub key: String,
    /// `tensor` (an external constant tensor) or `named_data` (a key a delegate reads).
    pub kind: &'static str,
    /// The methods that need it.
    pub methods: Vec<String>,
    /// Element type the program declares (tensors only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dtype: Option<String>,
    /// Sizes the program declares (tensors only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sizes: Option<Vec<i32>>,
    /// Bytes the program needs (tensors: `nbytes`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// After a check against a data file: whether the file has the key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub found: Option<bool>,
    /// After a check: why the file's entry does not fit (dtype, sizes or too few bytes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// What the program expects from outside, and the result of checking a data file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ExternalData {
    /// The keys, in first-use order.
    pub keys: Vec<ExternalKey>,
    /// The check against a data file (`--data FILE.ptd`), when one was given.
    pub check: Option<DataCheck>,
}

/// The result of checking a data file against [`ExternalData::keys`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DataCheck {
    /// The data file as named by the caller.
    pub file: String,
    /// Every key found and fitting.
    pub satisfied: bool,
    /// Keys the file lacks.
    pub missing: Vec<String>,
    /// Keys found whose entry does not fit.
    pub mismatched: Vec<String>,
    /// Keys of the file the program does not ask for.
    pub unused: Vec<String>,
}

/// One entry a data file offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvailableData {
    /// Its key.
    pub key: String,
    /// Element type name, when the entry has a tensor layout.
    pub dtype: Option<String>,
    /// Sizes, when the entry has a tensor layout.
    pub sizes: Option<Vec<i32>>,
    /// Bytes stored.
    pub bytes: u64,
}

impl ExternalData {
    /// The external constant tensors of `program`.
    pub fn of_program(program: &Program<'_>) -> Self {
        let mut out = Self::default();
        for plan in program.execution_plan.iter().flatten() {
            let method = plan.name.clone().unwrap_or_default();
            for v in plan.values.iter().flatten() {
                let Some(KernelTypes::Tensor(t)) = &v.val else {
                    continue;
                };
                let Some(info) = &t.extra_tensor_info else {
                    continue;
                };
                if info.location != TensorDataLocation::EXTERNAL {
                    continue;
                }
                let key = info.fully_qualified_name.clone().unwrap_or_default();
                let i = out.entry(&key, "tensor", &method);
                if let Some(k) = out.keys.get_mut(i) {
                    if k.dtype.is_none() {
                        k.dtype = Some(t.scalar_type.to_string());
                        k.sizes = Some(t.sizes.clone().unwrap_or_default());
                        k.bytes = tensor_nbytes(t);
                    }
                }
            }
        }
        out
    }

    /// Index of the entry for `key`, added if new; records `method` as a user.
    fn entry(&mut self, key: &str, kind: &'static str, method: &str) -> usize {
        let i = match self.keys.iter().position(|k| k.key == key) {
            Some(i) => i,
            None => {
                self.keys.push(ExternalKey {
                    key: key.to_string(),
                    kind,
                    methods: Vec::new(),
                    dtype: None,
                    sizes: None,
                    bytes: None,
                    found: None,
                    problem: None,
                });
                self.keys.len() - 1
            }
        };
        if let Some(k) = self.keys.get_mut(i) {
            if !k.methods.iter().any(|m| m == method) {
                k.methods.push(method.to_string());
            }
        }
        i
    }

    /// Records a named-data key that a delegate of `method` reads and the program does
    /// not hold.
    pub fn add_named_key(&mut self, key: &str, method: &str, bytes: Option<u64>) {
        let i = self.entry(key, "named_data", method);
        if let Some(k) = self.keys.get_mut(i) {
            k.bytes = k.bytes.or(bytes);
        }
    }

    /// Checks the keys against what a data file offers, filling `found`, `problem` and
    /// [`ExternalData::check`].
    pub fn check(&mut self, file: &str, available: &[AvailableData]) {
        let mut missing = Vec::new();
        let mut mismatched = Vec::new();
        for k in &mut self.keys {
            let Some(a) = available.iter().find(|a| a.key == k.key) else {
                k.found = Some(false);
                k.problem = None;
                missing.push(k.key.clone());
                continue;
            };
            k.found = Some(true);
            k.problem = fit_problem(k, a);
            if k.problem.is_some() {
                mismatched.push(k.key.clone());
            }
        }
        let unused = available
            .iter()
            .filter(|a| !self.keys.iter().any(|k| k.key == a.key))
            .map(|a| a.key.clone())
            .collect();
        self.check = Some(DataCheck {
            file: file.to_string(),
            satisfied: missing.is_empty() && mismatched.is_empty(),
            missing,
            mismatched,
            unused,
        });
    }
}

/// Why an offered entry does not fit an expected key, if it does not.
fn fit_problem(k: &ExternalKey, a: &AvailableData) -> Option<String> {
    if let (Some(want), Some(got)) = (&k.dtype, &a.dtype) {
        if want != got {
            return Some(format!("dtype {got} in the file, {want} in the program"));
        }
    }
    if let (Some(want), Some(got)) = (&k.sizes, &a.sizes) {
        if want != got {
            return Some(format!(
                "sizes {got:?} in the file, {want:?} in the program"
            ));
        }
    }
    match k.bytes {
        Some(want) if a.bytes < want => Some(format!(
            "{} bytes in the file, the program needs {want}",
            a.bytes
        )),
        _ => None,
    }
}

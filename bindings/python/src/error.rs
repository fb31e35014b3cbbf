//! Errors: the Python exception `ptekit.PteError` and the conversion error that names
//! the field path of a bad value in the object graph.

use std::fmt;

use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

create_exception!(
    ptekit,
    PteError,
    PyValueError,
    "A program or file that ptekit cannot serialize or deserialize. The message names the \
     field path (e.g. `program.execution_plan[0].values[3].val.sizes[1]`) or the file \
     offset the problem concerns."
);

/// One step of a field path.
#[derive(Debug, Clone)]
pub enum Seg {
    /// An attribute.
    Field(&'static str),
    /// A list index.
    Index(usize),
    /// A dictionary key.
    Key(String),
}

/// A value of the Python object graph that does not fit the schema.
#[derive(Debug, thiserror::Error)]
pub struct ConvError {
    /// The path from the value up to the root, innermost first (pushed while unwinding).
    path: Vec<Seg>,
    /// What is wrong.
    message: String,
    /// The Python exception that revealed the problem, if any.
    cause: Option<PyErr>,
}

impl fmt::Display for ConvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.path.iter().rev().enumerate() {
            match seg {
                Seg::Field(name) if i == 0 => write!(f, "{name}")?,
                Seg::Field(name) => write!(f, ".{name}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
                Seg::Key(k) => write!(f, "[{k:?}]")?,
            }
        }
        write!(f, ": {}", self.message)
    }
}

impl ConvError {
    /// A new error at the current value.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            path: Vec::new(),
            message: message.into(),
            cause: None,
        }
    }

    /// A new error caused by a Python exception.
    pub fn from_py(py: Python<'_>, what: &str, err: PyErr) -> Self {
        let message = format!("{what}: {}", err.value(py));
        Self {
            path: Vec::new(),
            message,
            cause: Some(err),
        }
    }

    /// Adds the enclosing step of the path.
    pub fn at(mut self, seg: Seg) -> Self {
        self.path.push(seg);
        self
    }
}

/// Everything the bindings report as an error.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// A value of the object graph does not fit the schema.
    #[error("{0}")]
    Convert(#[from] ConvError),
    /// The Rust core rejected the model, file or options.
    #[error("{0}")]
    Pte(#[from] ptekit_format::pte::PteError),
    /// A bundled program (`.bpte`) the Rust core cannot decode or pack.
    #[error("{0}")]
    Bundled(#[from] ptekit_format::bundled::BundledError),
    /// A tensor-data file (`.ptd`) or payload the Rust core rejected.
    #[error("{0}")]
    FlatTensor(#[from] ptekit_format::flat_tensor::FlatTensorError),
    /// A Python exception that is not about the input's shape (I/O, keyboard interrupt).
    #[error("{0}")]
    Python(#[from] PyErr),
}

impl From<BindError> for PyErr {
    fn from(err: BindError) -> PyErr {
        match err {
            BindError::Convert(e) => {
                let msg = e.to_string();
                let out = PteError::new_err(msg);
                if let Some(cause) = e.cause {
                    Python::attach(|py| out.set_cause(py, Some(cause)));
                }
                out
            }
            BindError::Pte(e) => {
                // I/O failures are OSErrors (of the matching subclass), with the context.
                if let ptekit_format::pte::PteError::Container(c) = &e {
                    if let Some(kind) = os_error_kind(c) {
                        return std::io::Error::new(kind, e.to_string()).into();
                    }
                }
                PteError::new_err(chain_message(&e))
            }
            BindError::Bundled(e) => PteError::new_err(chain_message(&e)),
            BindError::FlatTensor(e) => {
                if let ptekit_format::flat_tensor::FlatTensorError::Container(c) = &e {
                    if let Some(kind) = os_error_kind(c) {
                        return std::io::Error::new(kind, e.to_string()).into();
                    }
                }
                PteError::new_err(chain_message(&e))
            }
            BindError::Python(e) => e,
        }
    }
}

/// The `OSError` subclass (through its `io::ErrorKind`) of an I/O failure or of an input
/// that is not a regular file; `None` for a malformed file.
fn os_error_kind(err: &ptekit_format::error::ContainerError) -> Option<std::io::ErrorKind> {
    use ptekit_format::error::ContainerError;
    use ptekit_format::mapped::NodeKind;
    match err {
        ContainerError::Io { source, .. } | ContainerError::Write { source, .. } => {
            Some(source.kind())
        }
        ContainerError::NotRegular {
            kind: NodeKind::Directory,
            ..
        } => Some(std::io::ErrorKind::IsADirectory),
        ContainerError::NotRegular { .. } => Some(std::io::ErrorKind::InvalidInput),
        _ => None,
    }
}

/// The message of `err` followed by those of its sources that it does not already
/// contain (the core's errors often embed their source's text).
fn chain_message(err: &dyn std::error::Error) -> String {
    let mut msg = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let s_msg = s.to_string();
        if !msg.contains(&s_msg) {
            msg.push_str(": ");
            msg.push_str(&s_msg);
        }
        source = s.source();
    }
    msg
}

/// Result of the conversion functions.
pub type ConvResult<T> = Result<T, ConvError>;

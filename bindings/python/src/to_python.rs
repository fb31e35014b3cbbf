//! Building the reference's `PTEFile` object graph from a restored [`PteModel`].
//!
//! Objects are created like the reference's decoder leaves them, without running the
//! dataclasses' `__init__` (which is the slow part): `object.__new__(cls)` and one
//! attribute per field. Enum fields get enum members (looked up once per value), strings
//! repeated across the program share one `str`, `Double` infinities are the strings
//! `"inf"` / `"-inf"` (what `Double.__init__` stores) and absent fields are `None`.

use std::collections::HashMap;

use pyo3::exceptions::PyKeyError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString};
use pyo3::IntoPyObjectExt;

use ptekit_format::program::{
    AllocationDetails, BackendDelegate, Buffer, Chain, EValue, ExecutionPlan, ExtraTensorInfo,
    Frame, Instruction, InstructionArguments, KernelTypes, Program, SubsegmentOffsets, Tensor,
};
use ptekit_format::pte::{DataEntry, NamedDataStore, PteModel};

use crate::error::{BindError, PteError};

type Any<'py> = Bound<'py, PyAny>;

macro_rules! classes {
    ($($name:ident),+ $(,)?) => {
        /// The reference's classes, looked up by name in the dict the Python layer passes.
        #[allow(non_snake_case)]
        struct Classes<'py> {
            $($name: Any<'py>,)+
        }

        impl<'py> Classes<'py> {
            fn load(dict: &Bound<'py, PyDict>) -> PyResult<Self> {
                Ok(Self {
                    $($name: dict
                        .get_item(stringify!($name))?
                        .ok_or_else(|| PyKeyError::new_err(stringify!($name)))?,)+
                })
            }
        }
    };
}

classes!(
    Program,
    ExecutionPlan,
    ContainerMetadata,
    EValue,
    Tensor,
    Null,
    Int,
    Bool,
    Double,
    String,
    IntList,
    DoubleList,
    BoolList,
    TensorList,
    OptionalTensorList,
    AllocationDetails,
    ExtraTensorInfo,
    Chain,
    Instruction,
    KernelCall,
    DelegateCall,
    MoveCall,
    JumpFalseCall,
    FreeCall,
    FrameList,
    Frame,
    Operator,
    BackendDelegate,
    BackendDelegateDataReference,
    CompileSpec,
    NonConstBufferDevice,
    Buffer,
    BackendDelegateInlineData,
    DataSegment,
    SubsegmentOffsets,
    NamedData,
    ScalarType,
    TensorShapeDynamism,
    TensorDataLocation,
    DeviceType,
    DataLocation,
    PTEFile,
    NamedDataStoreOutput,
    DataEntry,
);

/// Which enum a cached member belongs to.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum EnumKind {
    ScalarType,
    TensorShapeDynamism,
    TensorDataLocation,
    DeviceType,
    DataLocation,
}

struct Builder<'py> {
    py: Python<'py>,
    classes: Classes<'py>,
    object_new: Any<'py>,
    enums: HashMap<(EnumKind, i8), Any<'py>>,
    owned_strings: HashMap<std::string::String, Bound<'py, PyString>>,
}

/// Builds `PTEFile(program, mutable_data, named_data)` from `model`; `classes` maps the
/// reference's class names to the classes.
pub fn pte_file<'py>(
    py: Python<'py>,
    model: &PteModel<'_>,
    classes: &Bound<'py, PyDict>,
) -> Result<Any<'py>, BindError> {
    let object_new = py
        .get_type::<pyo3::types::PyAny>()
        .getattr(intern!(py, "__new__"))?;
    let mut b = Builder {
        py,
        classes: Classes::load(classes)?,
        object_new,
        enums: HashMap::new(),
        owned_strings: HashMap::new(),
    };
    let program = b.program(&model.program)?;
    let mutable_data = match &model.mutable_data {
        None => py.None().into_bound(py),
        Some(list) => b.list(list, |b, x| b.buffer(x))?,
    };
    let named_data = match &model.named_data {
        None => py.None().into_bound(py),
        Some(store) => b.named_data_store(store)?,
    };
    let cls = b.classes.PTEFile.clone();
    b.make(
        &cls,
        &[
            (intern!(py, "program"), program),
            (intern!(py, "mutable_data"), mutable_data),
            (intern!(py, "named_data"), named_data),
        ],
    )
}

impl<'py> Builder<'py> {
    /// `object.__new__(cls)` with the given attributes.
    fn make(
        &self,
        cls: &Any<'py>,
        fields: &[(&Bound<'py, PyString>, Any<'py>)],
    ) -> Result<Any<'py>, BindError> {
        let obj = self.object_new.call1((cls,))?;
        for (name, value) in fields {
            obj.setattr(*name, value)?;
        }
        Ok(obj)
    }

    fn none(&self) -> Any<'py> {
        self.py.None().into_bound(self.py)
    }

    fn int<T>(&self, v: T) -> Result<Any<'py>, BindError>
    where
        T: IntoPyObject<'py>,
    {
        Ok(v.into_bound_py_any(self.py)?)
    }

    fn boolean(&self, v: bool) -> Any<'py> {
        pyo3::types::PyBool::new(self.py, v).to_owned().into_any()
    }

    fn enum_member(
        &mut self,
        kind: EnumKind,
        value: i8,
        field: &str,
    ) -> Result<Any<'py>, BindError> {
        if let Some(m) = self.enums.get(&(kind, value)) {
            return Ok(m.clone());
        }
        let (cls, name) = match kind {
            EnumKind::ScalarType => (&self.classes.ScalarType, "ScalarType"),
            EnumKind::TensorShapeDynamism => {
                (&self.classes.TensorShapeDynamism, "TensorShapeDynamism")
            }
            EnumKind::TensorDataLocation => {
                (&self.classes.TensorDataLocation, "TensorDataLocation")
            }
            EnumKind::DeviceType => (&self.classes.DeviceType, "DeviceType"),
            EnumKind::DataLocation => (&self.classes.DataLocation, "DataLocation"),
        };
        let member = cls.call1((value,)).map_err(|e| {
            let err = PteError::new_err(format!("{field}: {value} is not a valid {name}"));
            err.set_cause(self.py, Some(e));
            BindError::Python(err)
        })?;
        self.enums.insert((kind, value), member.clone());
        Ok(member)
    }

    fn string(&mut self, s: &Option<std::string::String>) -> Any<'py> {
        let Some(s) = s else {
            return self.none();
        };
        if let Some(v) = self.owned_strings.get(s.as_str()) {
            return v.clone().into_any();
        }
        let v = PyString::new(self.py, s);
        if self.owned_strings.len() < 65536 {
            self.owned_strings.insert(s.clone(), v.clone());
        }
        v.into_any()
    }

    fn bytes(&self, b: &Option<std::borrow::Cow<'_, [u8]>>) -> Any<'py> {
        match b {
            None => self.none(),
            Some(b) => PyBytes::new(self.py, b).into_any(),
        }
    }

    fn list<T>(
        &mut self,
        items: &[T],
        mut f: impl FnMut(&mut Self, &T) -> Result<Any<'py>, BindError>,
    ) -> Result<Any<'py>, BindError> {
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            out.push(f(self, item)?);
        }
        Ok(PyList::new(self.py, out)?.into_any())
    }

    fn opt_list<T>(
        &mut self,
        items: &Option<Vec<T>>,
        f: impl FnMut(&mut Self, &T) -> Result<Any<'py>, BindError>,
    ) -> Result<Any<'py>, BindError> {
        match items {
            None => Ok(self.none()),
            Some(items) => self.list(items, f),
        }
    }

    fn int_list<T>(&self, items: &Option<Vec<T>>) -> Result<Any<'py>, BindError>
    where
        T: Copy + IntoPyObject<'py>,
    {
        match items {
            None => Ok(self.none()),
            Some(items) => {
                let mut out = Vec::with_capacity(items.len());
                for &v in items {
                    out.push(self.int(v)?);
                }
                Ok(PyList::new(self.py, out)?.into_any())
            }
        }
    }

    /// `IntList` / `TensorList` / `OptionalTensorList`: one attribute `items`.
    fn int_items<T>(&self, cls: &Any<'py>, items: &Option<Vec<T>>) -> Result<Any<'py>, BindError>
    where
        T: Copy + IntoPyObject<'py>,
    {
        let items = self.int_list(items)?;
        self.make(cls, &[(intern!(self.py, "items"), items)])
    }

    /// An object of `cls` whose attributes are the given integers.
    fn ints(
        &self,
        cls: &Any<'py>,
        fields: &[(&Bound<'py, PyString>, i64)],
    ) -> Result<Any<'py>, BindError> {
        let mut values = Vec::with_capacity(fields.len());
        for &(name, v) in fields {
            values.push((name, self.int(v)?));
        }
        self.make(cls, &values)
    }

    /// `KernelCall` / `DelegateCall`: an index attribute named `index_name` and `args`.
    fn call(
        &self,
        cls: &Any<'py>,
        index_name: &Bound<'py, PyString>,
        index: i32,
        args: &Option<Vec<i32>>,
    ) -> Result<Any<'py>, BindError> {
        let index = self.int(index)?;
        let args = self.int_list(args)?;
        self.make(
            cls,
            &[(index_name, index), (intern!(self.py, "args"), args)],
        )
    }

    /// `DataEntry(buffer_index, alignment, None)`.
    fn data_entry(&self, entry: &DataEntry) -> Result<Any<'py>, BindError> {
        let index = self.int(entry.buffer_index)?;
        let alignment = self.int(entry.alignment)?;
        self.make(
            &self.classes.DataEntry,
            &[
                (intern!(self.py, "buffer_index"), index),
                (intern!(self.py, "alignment"), alignment),
                (intern!(self.py, "tensor_layout"), self.none()),
            ],
        )
    }

    fn program(&mut self, p: &Program<'_>) -> Result<Any<'py>, BindError> {
        let py = self.py;
        let version = self.int(p.version)?;
        let execution_plan = self.opt_list(&p.execution_plan, |b, x| b.execution_plan(x))?;
        let constant_buffer = self.opt_list(&p.constant_buffer, |b, x| b.buffer(x))?;
        let backend_delegate_data = self.opt_list(&p.backend_delegate_data, |b, x| {
            let data = b.bytes(&x.data);
            let cls = b.classes.BackendDelegateInlineData.clone();
            b.make(&cls, &[(intern!(py, "data"), data)])
        })?;
        let segments = self.opt_list(&p.segments, |b, x| {
            let offset = b.int(x.offset)?;
            let size = b.int(x.size)?;
            let cls = b.classes.DataSegment.clone();
            b.make(
                &cls,
                &[(intern!(py, "offset"), offset), (intern!(py, "size"), size)],
            )
        })?;
        let constant_segment = match &p.constant_segment {
            None => self.none(),
            Some(s) => self.subsegment(s)?,
        };
        let mutable_data_segments = self.opt_list(&p.mutable_data_segments, Builder::subsegment)?;
        let named_data = self.opt_list(&p.named_data, |b, x| {
            let key = b.string(&x.key);
            let segment_index = b.int(x.segment_index)?;
            let cls = b.classes.NamedData.clone();
            b.make(
                &cls,
                &[
                    (intern!(py, "key"), key),
                    (intern!(py, "segment_index"), segment_index),
                ],
            )
        })?;
        let cls = self.classes.Program.clone();
        self.make(
            &cls,
            &[
                (intern!(py, "version"), version),
                (intern!(py, "execution_plan"), execution_plan),
                (intern!(py, "constant_buffer"), constant_buffer),
                (intern!(py, "backend_delegate_data"), backend_delegate_data),
                (intern!(py, "segments"), segments),
                (intern!(py, "constant_segment"), constant_segment),
                (intern!(py, "mutable_data_segments"), mutable_data_segments),
                (intern!(py, "named_data"), named_data),
            ],
        )
    }

    fn buffer(&mut self, x: &Buffer<'_>) -> Result<Any<'py>, BindError> {
        let storage = self.bytes(&x.storage);
        let cls = self.classes.Buffer.clone();
        self.make(&cls, &[(intern!(self.py, "storage"), storage)])
    }

    fn subsegment(&mut self, s: &SubsegmentOffsets) -> Result<Any<'py>, BindError> {
        let segment_index = self.int(s.segment_index)?;
        let offsets = self.int_list(&s.offsets)?;
        let cls = self.classes.SubsegmentOffsets.clone();
        self.make(
            &cls,
            &[
                (intern!(self.py, "segment_index"), segment_index),
                (intern!(self.py, "offsets"), offsets),
            ],
        )
    }

    fn execution_plan(&mut self, p: &ExecutionPlan<'_>) -> Result<Any<'py>, BindError> {
        let py = self.py;
        let name = self.string(&p.name);
        let container_meta_type = match &p.container_meta_type {
            None => self.none(),
            Some(c) => {
                let inp = self.string(&c.encoded_inp_str);
                let out = self.string(&c.encoded_out_str);
                let cls = self.classes.ContainerMetadata.clone();
                self.make(
                    &cls,
                    &[
                        (intern!(py, "encoded_inp_str"), inp),
                        (intern!(py, "encoded_out_str"), out),
                    ],
                )?
            }
        };
        let values = self.opt_list(&p.values, Builder::evalue)?;
        let inputs = self.int_list(&p.inputs)?;
        let outputs = self.int_list(&p.outputs)?;
        let chains = self.opt_list(&p.chains, Builder::chain)?;
        let operators = self.opt_list(&p.operators, |b, o| {
            let name = b.string(&o.name);
            let overload = b.string(&o.overload);
            let cls = b.classes.Operator.clone();
            b.make(
                &cls,
                &[
                    (intern!(py, "name"), name),
                    (intern!(py, "overload"), overload),
                ],
            )
        })?;
        let delegates = self.opt_list(&p.delegates, |b, d| b.delegate(d))?;
        let non_const_buffer_sizes = self.int_list(&p.non_const_buffer_sizes)?;
        let non_const_buffer_device = self.opt_list(&p.non_const_buffer_device, |b, d| {
            let buffer_idx = b.int(d.buffer_idx)?;
            let device_type =
                b.enum_member(EnumKind::DeviceType, d.device_type.0, "device_type")?;
            let device_index = b.int(d.device_index)?;
            let cls = b.classes.NonConstBufferDevice.clone();
            b.make(
                &cls,
                &[
                    (intern!(py, "buffer_idx"), buffer_idx),
                    (intern!(py, "device_type"), device_type),
                    (intern!(py, "device_index"), device_index),
                ],
            )
        })?;
        let cls = self.classes.ExecutionPlan.clone();
        self.make(
            &cls,
            &[
                (intern!(py, "name"), name),
                (intern!(py, "container_meta_type"), container_meta_type),
                (intern!(py, "values"), values),
                (intern!(py, "inputs"), inputs),
                (intern!(py, "outputs"), outputs),
                (intern!(py, "chains"), chains),
                (intern!(py, "operators"), operators),
                (intern!(py, "delegates"), delegates),
                (
                    intern!(py, "non_const_buffer_sizes"),
                    non_const_buffer_sizes,
                ),
                (
                    intern!(py, "non_const_buffer_device"),
                    non_const_buffer_device,
                ),
            ],
        )
    }

    fn evalue(&mut self, v: &EValue) -> Result<Any<'py>, BindError> {
        let py = self.py;
        let val = match &v.val {
            None => self.none(),
            Some(KernelTypes::Tensor(t)) => self.tensor(t)?,
            Some(KernelTypes::Null(_)) => {
                let cls = self.classes.Null.clone();
                self.make(&cls, &[])?
            }
            Some(KernelTypes::Int(i)) => {
                let x = self.int(i.int_val)?;
                let cls = self.classes.Int.clone();
                self.make(&cls, &[(intern!(py, "int_val"), x)])?
            }
            Some(KernelTypes::Bool(x)) => {
                let x = self.boolean(x.bool_val);
                let cls = self.classes.Bool.clone();
                self.make(&cls, &[(intern!(py, "bool_val"), x)])?
            }
            Some(KernelTypes::Double(d)) => {
                let x = d.double_val;
                let x = if x == f64::INFINITY {
                    intern!(py, "inf").clone().into_any()
                } else if x == f64::NEG_INFINITY {
                    intern!(py, "-inf").clone().into_any()
                } else {
                    pyo3::types::PyFloat::new(py, x).into_any()
                };
                let cls = self.classes.Double.clone();
                self.make(&cls, &[(intern!(py, "double_val"), x)])?
            }
            Some(KernelTypes::String(s)) => {
                let x = self.string(&s.string_val);
                let cls = self.classes.String.clone();
                self.make(&cls, &[(intern!(py, "string_val"), x)])?
            }
            Some(KernelTypes::IntList(l)) => self.int_items(&self.classes.IntList, &l.items)?,
            Some(KernelTypes::DoubleList(l)) => {
                let x = match &l.items {
                    None => self.none(),
                    Some(items) => {
                        PyList::new(py, items.iter().map(|&f| pyo3::types::PyFloat::new(py, f)))?
                            .into_any()
                    }
                };
                let cls = self.classes.DoubleList.clone();
                self.make(&cls, &[(intern!(py, "items"), x)])?
            }
            Some(KernelTypes::BoolList(l)) => {
                let x = match &l.items {
                    None => self.none(),
                    Some(items) => {
                        PyList::new(py, items.iter().map(|&b| self.boolean(b)))?.into_any()
                    }
                };
                let cls = self.classes.BoolList.clone();
                self.make(&cls, &[(intern!(py, "items"), x)])?
            }
            Some(KernelTypes::TensorList(l)) => {
                self.int_items(&self.classes.TensorList, &l.items)?
            }
            Some(KernelTypes::OptionalTensorList(l)) => {
                self.int_items(&self.classes.OptionalTensorList, &l.items)?
            }
        };
        let cls = self.classes.EValue.clone();
        self.make(&cls, &[(intern!(py, "val"), val)])
    }

    fn tensor(&mut self, t: &Tensor) -> Result<Any<'py>, BindError> {
        let py = self.py;
        let scalar_type = self.enum_member(EnumKind::ScalarType, t.scalar_type.0, "scalar_type")?;
        let storage_offset = self.int(t.storage_offset)?;
        let sizes = self.int_list(&t.sizes)?;
        let dim_order = self.int_list(&t.dim_order)?;
        let requires_grad = self.boolean(t.requires_grad);
        let layout = self.int(t.layout)?;
        let data_buffer_idx = self.int(t.data_buffer_idx)?;
        let allocation_info = match &t.allocation_info {
            None => self.none(),
            Some(a) => self.allocation(a)?,
        };
        let shape_dynamism = self.enum_member(
            EnumKind::TensorShapeDynamism,
            t.shape_dynamism.0,
            "shape_dynamism",
        )?;
        let extra_tensor_info = match &t.extra_tensor_info {
            None => self.none(),
            Some(e) => self.extra_tensor_info(e)?,
        };
        let cls = self.classes.Tensor.clone();
        self.make(
            &cls,
            &[
                (intern!(py, "scalar_type"), scalar_type),
                (intern!(py, "storage_offset"), storage_offset),
                (intern!(py, "sizes"), sizes),
                (intern!(py, "dim_order"), dim_order),
                (intern!(py, "requires_grad"), requires_grad),
                (intern!(py, "layout"), layout),
                (intern!(py, "data_buffer_idx"), data_buffer_idx),
                (intern!(py, "allocation_info"), allocation_info),
                (intern!(py, "shape_dynamism"), shape_dynamism),
                (intern!(py, "extra_tensor_info"), extra_tensor_info),
            ],
        )
    }

    fn allocation(&mut self, a: &AllocationDetails) -> Result<Any<'py>, BindError> {
        let py = self.py;
        self.ints(
            &self.classes.AllocationDetails,
            &[
                (intern!(py, "memory_id"), a.memory_id.into()),
                (intern!(py, "memory_offset_low"), a.memory_offset_low.into()),
                (
                    intern!(py, "memory_offset_high"),
                    a.memory_offset_high.into(),
                ),
            ],
        )
    }

    fn extra_tensor_info(&mut self, e: &ExtraTensorInfo) -> Result<Any<'py>, BindError> {
        let py = self.py;
        let idx = self.int(e.mutable_data_segments_idx)?;
        let fqn = self.string(&e.fully_qualified_name);
        let location = self.enum_member(EnumKind::TensorDataLocation, e.location.0, "location")?;
        let device_type = self.enum_member(EnumKind::DeviceType, e.device_type.0, "device_type")?;
        let device_index = self.int(e.device_index)?;
        let cls = self.classes.ExtraTensorInfo.clone();
        self.make(
            &cls,
            &[
                (intern!(py, "mutable_data_segments_idx"), idx),
                (intern!(py, "fully_qualified_name"), fqn),
                (intern!(py, "location"), location),
                (intern!(py, "device_type"), device_type),
                (intern!(py, "device_index"), device_index),
            ],
        )
    }

    fn chain(&mut self, c: &Chain) -> Result<Any<'py>, BindError> {
        let py = self.py;
        let inputs = self.int_list(&c.inputs)?;
        let outputs = self.int_list(&c.outputs)?;
        let instructions = self.opt_list(&c.instructions, Builder::instruction)?;
        let stacktrace = self.opt_list(&c.stacktrace, |b, fl| {
            let items = b.opt_list(&fl.items, Builder::frame)?;
            let cls = b.classes.FrameList.clone();
            b.make(&cls, &[(intern!(py, "items"), items)])
        })?;
        let cls = self.classes.Chain.clone();
        self.make(
            &cls,
            &[
                (intern!(py, "inputs"), inputs),
                (intern!(py, "outputs"), outputs),
                (intern!(py, "instructions"), instructions),
                (intern!(py, "stacktrace"), stacktrace),
            ],
        )
    }

    fn frame(&mut self, f: &Frame) -> Result<Any<'py>, BindError> {
        let py = self.py;
        let filename = self.string(&f.filename);
        let lineno = self.int(f.lineno)?;
        let name = self.string(&f.name);
        let context = self.string(&f.context);
        let cls = self.classes.Frame.clone();
        self.make(
            &cls,
            &[
                (intern!(py, "filename"), filename),
                (intern!(py, "lineno"), lineno),
                (intern!(py, "name"), name),
                (intern!(py, "context"), context),
            ],
        )
    }

    fn instruction(&mut self, i: &Instruction) -> Result<Any<'py>, BindError> {
        let py = self.py;
        let args = match &i.instr_args {
            None => self.none(),
            Some(InstructionArguments::KernelCall(k)) => self.call(
                &self.classes.KernelCall,
                intern!(py, "op_index"),
                k.op_index,
                &k.args,
            )?,
            Some(InstructionArguments::DelegateCall(d)) => self.call(
                &self.classes.DelegateCall,
                intern!(py, "delegate_index"),
                d.delegate_index,
                &d.args,
            )?,
            Some(InstructionArguments::MoveCall(m)) => self.ints(
                &self.classes.MoveCall,
                &[
                    (intern!(py, "move_from"), m.move_from.into()),
                    (intern!(py, "move_to"), m.move_to.into()),
                ],
            )?,
            Some(InstructionArguments::JumpFalseCall(j)) => self.ints(
                &self.classes.JumpFalseCall,
                &[
                    (intern!(py, "cond_value_index"), j.cond_value_index.into()),
                    (
                        intern!(py, "destination_instruction"),
                        j.destination_instruction.into(),
                    ),
                ],
            )?,
            Some(InstructionArguments::FreeCall(f)) => self.ints(
                &self.classes.FreeCall,
                &[(intern!(py, "value_index"), f.value_index.into())],
            )?,
        };
        let cls = self.classes.Instruction.clone();
        self.make(&cls, &[(intern!(py, "instr_args"), args)])
    }

    fn delegate(&mut self, d: &BackendDelegate<'_>) -> Result<Any<'py>, BindError> {
        let py = self.py;
        let id = self.string(&d.id);
        let processed = match &d.processed {
            None => self.none(),
            Some(r) => {
                let location =
                    self.enum_member(EnumKind::DataLocation, r.location.0, "processed.location")?;
                let index = self.int(r.index)?;
                let cls = self.classes.BackendDelegateDataReference.clone();
                self.make(
                    &cls,
                    &[
                        (intern!(py, "location"), location),
                        (intern!(py, "index"), index),
                    ],
                )?
            }
        };
        let compile_specs = self.opt_list(&d.compile_specs, |b, c| {
            let key = b.string(&c.key);
            let value = b.bytes(&c.value);
            let cls = b.classes.CompileSpec.clone();
            b.make(
                &cls,
                &[(intern!(py, "key"), key), (intern!(py, "value"), value)],
            )
        })?;
        let cls = self.classes.BackendDelegate.clone();
        self.make(
            &cls,
            &[
                (intern!(py, "id"), id),
                (intern!(py, "processed"), processed),
                (intern!(py, "compile_specs"), compile_specs),
            ],
        )
    }

    /// `NamedDataStoreOutput(buffers, pte_data={key: DataEntry(i, alignment, None)},
    /// external_data={})`.
    fn named_data_store(&mut self, s: &NamedDataStore<'_>) -> Result<Any<'py>, BindError> {
        let py = self.py;
        let buffers = PyList::new(py, s.buffers.iter().map(|b| PyBytes::new(py, b)))?.into_any();
        let pte_data = PyDict::new(py);
        for (key, entry) in &s.pte_data {
            pte_data.set_item(key, self.data_entry(entry)?)?;
        }
        let external = PyDict::new(py);
        for (tag, entries) in &s.external_data {
            let d = PyDict::new(py);
            for (key, entry) in entries {
                d.set_item(key, self.data_entry(entry)?)?;
            }
            external.set_item(tag, d)?;
        }
        let cls = self.classes.NamedDataStoreOutput.clone();
        self.make(
            &cls,
            &[
                (intern!(py, "buffers"), buffers),
                (intern!(py, "pte_data"), pte_data.into_any()),
                (intern!(py, "external_data"), external.into_any()),
            ],
        )
    }
}

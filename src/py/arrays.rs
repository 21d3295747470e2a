//! Reading NumPy arrays straight from their C struct: a few loads, no borrow-tracker lock.

use std::os::raw::c_int;
use std::sync::atomic::{AtomicI32, Ordering};

use numpy::npyffi::{self, NPY_TYPES};
use numpy::{PyUntypedArray, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

use crate::numerics::float::Dtype;
use crate::numerics::half::Elem;
use crate::optim::ops::{Slice, SliceMut};

/// The fields of an ndarray the bindings rely on, read from its C struct.
pub(crate) struct Layout<'a> {
    pub data: usize,
    /// float32 / float64 in native byte order.
    pub dtype: Option<Dtype>,
    /// Those, or float16 (native) or `ml_dtypes.bfloat16`.
    pub elem: Option<Elem>,
    pub shape: &'a [usize],
    /// Byte strides, one per dimension.
    pub strides: &'a [isize],
    pub flags: c_int,
}

const BEHAVED_C: c_int = npyffi::NPY_ARRAY_C_CONTIGUOUS | npyffi::NPY_ARRAY_ALIGNED;

impl Layout<'_> {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn nbytes(&self) -> usize {
        self.len() * self.elem.map_or(0, Elem::itemsize)
    }

    pub fn is_c_aligned(&self) -> bool {
        self.flags & BEHAVED_C == BEHAVED_C
    }

    pub fn is_writeable(&self) -> bool {
        self.flags & npyffi::NPY_ARRAY_WRITEABLE != 0
    }
}

pub(crate) fn itemsize(d: Dtype) -> usize {
    match d {
        Dtype::F32 => 4,
        Dtype::F64 => 8,
    }
}

pub(crate) fn layout<'a>(a: &'a Bound<'_, PyUntypedArray>) -> Layout<'a> {
    // SAFETY: `a` is a live ndarray and we hold the GIL; the struct outlives the borrow.
    unsafe {
        let f = &*npyffi::_PyArray_GET_ITEM_DATA(a.as_array_ptr());
        let d = &*npyffi::_PyDataType_GET_ITEM_DATA(f.descr);
        let native = d.byteorder as u8
            != if cfg!(target_endian = "little") {
                b'>'
            } else {
                b'<'
            };
        let elem = match d.type_num {
            n if n == NPY_TYPES::NPY_FLOAT as c_int && native => Some(Elem::F32),
            n if n == NPY_TYPES::NPY_DOUBLE as c_int && native => Some(Elem::F64),
            n if n == NPY_TYPES::NPY_HALF as c_int && native => Some(Elem::F16),
            n if n >= NPY_TYPES::NPY_USERDEF as c_int && is_bfloat16(a, n) => Some(Elem::Bf16),
            _ => None,
        };
        let dtype = match elem {
            Some(Elem::F32) => Some(Dtype::F32),
            Some(Elem::F64) => Some(Dtype::F64),
            _ => None,
        };
        let (shape, strides) = if f.nd == 0 {
            (&[][..], &[][..])
        } else {
            (
                std::slice::from_raw_parts(f.dimensions as *const usize, f.nd as usize),
                std::slice::from_raw_parts(f.strides.cast_const(), f.nd as usize),
            )
        };
        Layout {
            data: f.data as usize,
            dtype,
            elem,
            shape,
            strides,
            flags: f.flags,
        }
    }
}

/// The type number NumPy gave `ml_dtypes.bfloat16` in this process (user-defined dtypes are
/// numbered at registration), once an array of it was seen; -1 before.
static BFLOAT16_TYPE_NUM: AtomicI32 = AtomicI32::new(-1);

/// Whether the user-defined dtype numbered `n` is `ml_dtypes.bfloat16`: its name is
/// asked once, then the number is remembered.
fn is_bfloat16(a: &Bound<'_, PyUntypedArray>, n: c_int) -> bool {
    let known = BFLOAT16_TYPE_NUM.load(Ordering::Relaxed);
    if known >= 0 {
        return n == known;
    }
    let named = a
        .dtype()
        .getattr(pyo3::intern!(a.py(), "name"))
        .and_then(|v| v.extract::<String>())
        .is_ok_and(|name| name == "bfloat16");
    if named {
        BFLOAT16_TYPE_NUM.store(n, Ordering::Relaxed);
    }
    named
}

pub(crate) fn describe_dtype(a: &Bound<'_, PyUntypedArray>) -> String {
    a.dtype()
        .str()
        .map_or_else(|_| "?".into(), |s| s.to_string())
}

pub(crate) fn shape_str(shape: &[usize]) -> String {
    match shape {
        [n] => format!("({n},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(std::string::ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// An ndarray checked for direct use as a slice: float32/float64 in native byte order,
/// C-contiguous and aligned (and writeable, when asked).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Checked {
    pub data: usize,
    pub len: usize,
    pub dtype: Dtype,
    /// Whether the array is writeable (checked when asked; recorded either way).
    pub writeable: bool,
}

impl Checked {
    pub fn nbytes(&self) -> usize {
        self.len * itemsize(self.dtype)
    }

    /// The array as a mutable slice.
    ///
    /// # Safety
    /// The array must stay alive and unresized for `'a`, and no other live slice may
    /// overlap it.
    pub unsafe fn slice_mut<'a>(&self) -> SliceMut<'a> {
        unsafe {
            match self.dtype {
                Dtype::F32 => SliceMut::F32(std::slice::from_raw_parts_mut(
                    self.data as *mut f32,
                    self.len,
                )),
                Dtype::F64 => SliceMut::F64(std::slice::from_raw_parts_mut(
                    self.data as *mut f64,
                    self.len,
                )),
            }
        }
    }

    /// The array as a read-only slice.
    ///
    /// # Safety
    /// The array must stay alive and unresized for `'a`, and no mutable slice may overlap it.
    pub unsafe fn slice<'a>(&self) -> Slice<'a> {
        unsafe {
            match self.dtype {
                Dtype::F32 => Slice::F32(std::slice::from_raw_parts(
                    self.data as *const f32,
                    self.len,
                )),
                Dtype::F64 => Slice::F64(std::slice::from_raw_parts(
                    self.data as *const f64,
                    self.len,
                )),
            }
        }
    }
}

/// Checks that `obj` (described as `what`, e.g. "parameter 'W'") can be used as a slice,
/// updated in place when `writeable`.
pub(crate) fn check_array<'py>(
    obj: &Bound<'py, PyAny>,
    what: &str,
    writeable: bool,
) -> PyResult<(Bound<'py, PyUntypedArray>, Checked)> {
    let c = check_array_of(obj, what, writeable, false)?;
    let dtype = match c.elem {
        Elem::F32 => Dtype::F32,
        Elem::F64 => Dtype::F64,
        Elem::Bf16 | Elem::F16 => unreachable!("16-bit arrays were refused"),
    };
    Ok((
        c.array,
        Checked {
            data: c.data,
            len: c.len,
            dtype,
            writeable: c.writeable,
        },
    ))
}

/// An ndarray that passed [`check_array_of`], with the fields of its header read there.
pub(crate) struct ArrayOf<'py> {
    pub array: Bound<'py, PyUntypedArray>,
    pub data: usize,
    pub len: usize,
    pub elem: Elem,
    pub writeable: bool,
}

/// The error for a read-only array `what` that is updated in place.
pub(crate) fn read_only_error(what: &str) -> PyErr {
    PyValueError::new_err(format!(
        "{what} is read-only; it is updated in place and must be writeable"
    ))
}

/// [`check_array`], accepting float16 and bfloat16 arrays too when `half`; returns the
/// array with its data address, length, element type and writeability.
pub(crate) fn check_array_of<'py>(
    obj: &Bound<'py, PyAny>,
    what: &str,
    writeable: bool,
    half: bool,
) -> PyResult<ArrayOf<'py>> {
    let types = if half {
        "float32, float64, float16 or bfloat16"
    } else {
        "float32 or float64"
    };
    let a = obj.cast::<PyUntypedArray>().map_err(|_| {
        PyTypeError::new_err(format!(
            "{what} must be a numpy.ndarray of {types}, got {}",
            super::type_name(obj)
        ))
    })?;
    let l = layout(a);
    let elem = l.elem.filter(|e| half || !e.is_16bit()).ok_or_else(|| {
        PyTypeError::new_err(format!(
            "{what} has dtype {}, expected {types} (native byte order)",
            describe_dtype(a)
        ))
    })?;
    if writeable && !l.is_writeable() {
        return Err(read_only_error(what));
    }
    if !l.is_c_aligned() {
        return Err(PyValueError::new_err(format!(
            "{what} is not a C-contiguous, aligned array; it is {} in place, so pass the array \
             itself (e.g. made with np.ascontiguousarray), not a strided view",
            if writeable { "updated" } else { "read" }
        )));
    }
    Ok(ArrayOf {
        array: a.clone(),
        data: l.data,
        len: l.len(),
        elem,
        writeable: l.is_writeable(),
    })
}

/// The byte extents `(start, end, index)` of the non-empty arrays, sorted by start, after
/// checking that no two overlap (the error names them: "{what} {a} and {b} share memory").
pub(crate) fn disjoint_extents(
    arrays: &[Checked],
    names: &[String],
    what: &str,
) -> PyResult<Vec<(usize, usize, usize)>> {
    let bytes: Vec<(usize, usize)> = arrays.iter().map(|a| (a.data, a.nbytes())).collect();
    disjoint_byte_extents(&bytes, names, what)
}

/// [`disjoint_extents`] of arrays given as `(data address, bytes)`.
pub(crate) fn disjoint_byte_extents(
    arrays: &[(usize, usize)],
    names: &[String],
    what: &str,
) -> PyResult<Vec<(usize, usize, usize)>> {
    let mut extents: Vec<(usize, usize, usize)> = arrays
        .iter()
        .enumerate()
        .filter(|(_, &(_, nbytes))| nbytes > 0)
        .map(|(i, &(data, nbytes))| (data, data + nbytes, i))
        .collect();
    extents.sort_unstable();
    for w in extents.windows(2) {
        if w[1].0 < w[0].1 {
            return Err(PyValueError::new_err(format!(
                "{what} {} and {} share memory; each element may belong to one of them only",
                names[w[0].2], names[w[1].2]
            )));
        }
    }
    Ok(extents)
}

/// The index of the array of `extents` (disjoint, sorted, as [`disjoint_extents`] returns)
/// whose bytes overlap `[start, start + nbytes)`, if any.
pub(crate) fn overlapping(
    extents: &[(usize, usize, usize)],
    start: usize,
    nbytes: usize,
) -> Option<usize> {
    if nbytes == 0 {
        return None;
    }
    let end = start + nbytes;
    // The last extent starting before `end` is the only one that can overlap, since
    // extents are disjoint and sorted.
    let k = extents.partition_point(|&(s, _, _)| s < end);
    let &(_, e, idx) = extents.get(k.checked_sub(1)?)?;
    (e > start).then_some(idx)
}

/// A NumPy scalar (`np.float32(1.0)`, what `np.sum(x)` returns) as a 0-d array; `None` for
/// anything else. Lets a 0-d parameter take the scalar its gradient computation produced.
pub(crate) fn numpy_scalar_as_array<'py>(
    obj: &Bound<'py, PyAny>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let py = obj.py();
    // SAFETY: type checks and a conversion through NumPy's C API, with the GIL held;
    // PyArray_FromAny returns a new reference or NULL with an exception set.
    unsafe {
        let generic = npyffi::get_type_object(py, npyffi::NpyTypes::PyGenericArrType_Type);
        if pyo3::ffi::PyObject_TypeCheck(obj.as_ptr(), generic) == 0 {
            return Ok(None);
        }
        let array = numpy::PY_ARRAY_API.PyArray_FromAny(
            py,
            obj.as_ptr(),
            std::ptr::null_mut(),
            0,
            0,
            0,
            std::ptr::null_mut(),
        );
        Bound::from_owned_ptr_or_err(py, array).map(Some)
    }
}

//! Reading NumPy arrays straight from their C struct: a few loads, no borrow-tracker lock.

use std::os::raw::c_int;

use numpy::npyffi::{self, NPY_TYPES};
use numpy::{PyUntypedArray, PyUntypedArrayMethods};
use pyo3::prelude::*;

use crate::float::Dtype;

/// The fields of an ndarray the bindings rely on, read from its C struct.
pub(crate) struct Layout<'a> {
    pub data: usize,
    pub dtype: Option<Dtype>,
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
        self.len() * self.dtype.map_or(0, itemsize)
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
        let dtype = match d.type_num {
            n if n == NPY_TYPES::NPY_FLOAT as c_int && native => Some(Dtype::F32),
            n if n == NPY_TYPES::NPY_DOUBLE as c_int && native => Some(Dtype::F64),
            _ => None,
        };
        let (shape, strides) = if f.nd == 0 {
            (&[][..], &[][..])
        } else {
            (
                std::slice::from_raw_parts(f.dimensions as *const usize, f.nd as usize),
                std::slice::from_raw_parts(f.strides as *const isize, f.nd as usize),
            )
        };
        Layout {
            data: f.data as usize,
            dtype,
            shape,
            strides,
            flags: f.flags,
        }
    }
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
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

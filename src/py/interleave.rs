//! The binding of the column-to-row interleave (`ferroptim.data.Parquet` writes each
//! decoded row group into its batch block with it).

use numpy::{PyArrayDescrMethods, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyInt, PyList, PyTuple};

use super::arrays::{describe_dtype, disjoint_byte_extents, layout, overlapping, shape_str};
use super::{maybe_detach, type_name, Work};
use crate::data::interleave::{self, Column, Rows};
use crate::numerics::float::Dtype;
use crate::numerics::half::F16;

/// The column types accepted, for messages.
const COLUMN_TYPES: &str =
    "bool, int8/16/32/64, uint8/16/32/64, float16, float32 or float64 (native byte order)";

/// A 1-D column checked for reading: its address, length and type.
#[derive(Clone, Copy)]
struct Col {
    data: usize,
    len: usize,
    kind: u8,
    itemsize: usize,
}

impl Col {
    /// The column as a slice.
    ///
    /// # Safety
    /// The array must stay alive, unresized and unwritten for `'a`.
    unsafe fn view<'a>(&self) -> Column<'a> {
        let (p, n) = (self.data, self.len);
        // SAFETY: `check_column` checked the address aligned and `n` contiguous values of
        // this type; the caller keeps the array alive.
        unsafe {
            match (self.kind, self.itemsize) {
                (b'b', 1) => Column::Bool(std::slice::from_raw_parts(p as *const u8, n)),
                (b'i', 1) => Column::I8(std::slice::from_raw_parts(p as *const i8, n)),
                (b'i', 2) => Column::I16(std::slice::from_raw_parts(p as *const i16, n)),
                (b'i', 4) => Column::I32(std::slice::from_raw_parts(p as *const i32, n)),
                (b'i', 8) => Column::I64(std::slice::from_raw_parts(p as *const i64, n)),
                (b'u', 1) => Column::U8(std::slice::from_raw_parts(p as *const u8, n)),
                (b'u', 2) => Column::U16(std::slice::from_raw_parts(p as *const u16, n)),
                (b'u', 4) => Column::U32(std::slice::from_raw_parts(p as *const u32, n)),
                (b'u', 8) => Column::U64(std::slice::from_raw_parts(p as *const u64, n)),
                (b'f', 2) => Column::F16(std::slice::from_raw_parts(p as *const F16, n)),
                (b'f', 4) => Column::F32(std::slice::from_raw_parts(p as *const f32, n)),
                _ => Column::F64(std::slice::from_raw_parts(p as *const f64, n)),
            }
        }
    }
}

/// Where the rows go: from a block row on, or to the block rows of an int64 array
/// (address, length).
#[derive(Clone, Copy)]
enum Dest {
    Offset(usize),
    Scatter(usize, usize),
}

/// The array `obj` (named `what`) as a 1-D, C-contiguous, aligned array of a column type.
fn check_column<'py>(obj: &Bound<'py, PyAny>, what: &str) -> PyResult<(Bound<'py, PyAny>, Col)> {
    let a = obj.cast::<PyUntypedArray>().map_err(|_| {
        PyTypeError::new_err(format!(
            "{what} must be a 1-D numpy.ndarray of {COLUMN_TYPES}, got {}",
            type_name(obj)
        ))
    })?;
    let dt = a.dtype();
    let (kind, itemsize) = (dt.kind(), dt.itemsize());
    let known = matches!(
        (kind, itemsize),
        (b'b', 1) | (b'i' | b'u', 1 | 2 | 4 | 8) | (b'f', 2 | 4 | 8)
    );
    if !known || dt.is_native_byteorder() == Some(false) {
        return Err(PyTypeError::new_err(format!(
            "{what} has dtype {}, expected {COLUMN_TYPES}",
            describe_dtype(a)
        )));
    }
    let l = layout(a);
    if l.shape.len() != 1 {
        return Err(PyValueError::new_err(format!(
            "{what} must be 1-D (one value per row), got shape {}",
            shape_str(l.shape)
        )));
    }
    if !l.is_c_aligned() {
        return Err(PyValueError::new_err(format!(
            "{what} is not a contiguous, aligned array (a strided view?); pass \
             np.ascontiguousarray({what})"
        )));
    }
    let col = Col {
        data: l.data,
        len: l.shape[0],
        kind,
        itemsize,
    };
    Ok((obj.clone(), col))
}

/// Writes equal-length 1-D `columns` into the row-major block `out` (shape `(rows,
/// len(columns))`, float32 or float64, C-contiguous, writeable): value `i` of column `c`
/// goes to `out[dest + i, c]` when `dest` is an int (the block's rows `dest ..
/// dest + len`), or to `out[dest[i], c]` when `dest` is an int64 array (a shuffle's
/// scatter; each block row named at most once). Values are cast as NumPy's
/// `out[:, c] = column` casts them (round to nearest); block rows not written keep their
/// values. Columns: bool, signed or unsigned integers, float16/32/64. Everything is checked
/// before anything is written; the GIL is released for large blocks.
#[pyfunction]
#[pyo3(signature = (columns, out, dest=None))]
pub fn interleave_columns(
    py: Python<'_>,
    columns: &Bound<'_, PyAny>,
    out: &Bound<'_, PyAny>,
    dest: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    let items: Vec<Bound<'_, PyAny>> = if let Ok(l) = columns.cast::<PyList>() {
        l.iter().collect()
    } else if let Ok(t) = columns.cast::<PyTuple>() {
        t.iter().collect()
    } else {
        return Err(PyTypeError::new_err(format!(
            "columns must be a list of 1-D arrays, got {}",
            type_name(columns)
        )));
    };
    if items.is_empty() {
        return Err(PyValueError::new_err(
            "columns is empty: no columns to interleave",
        ));
    }
    let (_alive, cols): (Vec<_>, Vec<Col>) = items
        .iter()
        .enumerate()
        .map(|(i, c)| check_column(c, &format!("columns[{i}]")))
        .collect::<PyResult<Vec<_>>>()?
        .into_iter()
        .unzip();
    let n = cols[0].len;
    if let Some((i, c)) = cols.iter().enumerate().find(|(_, c)| c.len != n) {
        return Err(PyValueError::new_err(format!(
            "columns[{i}] has {} values, columns[0] has {n}; every column must have the same \
             length",
            c.len
        )));
    }

    let o = out.cast::<PyUntypedArray>().map_err(|_| {
        PyTypeError::new_err(format!(
            "out must be a 2-D numpy.ndarray of float32 or float64, got {}",
            type_name(out)
        ))
    })?;
    let ol = layout(o);
    let dtype = ol.dtype.ok_or_else(|| {
        PyTypeError::new_err(format!(
            "out has dtype {}, expected float32 or float64 (native byte order)",
            describe_dtype(o)
        ))
    })?;
    if ol.shape.len() != 2 || ol.shape[1] != cols.len() {
        return Err(PyValueError::new_err(format!(
            "out has shape {}, expected (rows, {}): one column per array of columns",
            shape_str(ol.shape),
            cols.len()
        )));
    }
    if !ol.is_writeable() {
        return Err(PyValueError::new_err(
            "out is read-only; it is written in place",
        ));
    }
    if !ol.is_c_aligned() {
        return Err(PyValueError::new_err(
            "out is not a C-contiguous, aligned array; it is written in place, so pass the \
             array itself (e.g. made with np.empty), not a strided view",
        ));
    }
    let out_len = ol.len();
    let out_bytes = out_len * super::arrays::itemsize(dtype);
    let extents = disjoint_byte_extents(&[(ol.data, out_bytes)], &["out".into()], "arrays")?;
    for (i, c) in cols.iter().enumerate() {
        if overlapping(&extents, c.data, c.len * c.itemsize).is_some() {
            return Err(PyValueError::new_err(format!(
                "columns[{i}] shares memory with out; pass a separate array"
            )));
        }
    }

    let (_dest_alive, dest_arg) = match dest {
        None => (None, Dest::Offset(0)),
        Some(d) if d.is_instance_of::<PyBool>() => {
            return Err(PyTypeError::new_err(
                "dest must be an int or an int64 array, got bool",
            ));
        }
        Some(d) if d.is_instance_of::<PyInt>() => {
            let start: usize = d
                .extract()
                .map_err(|_| PyValueError::new_err(format!("dest must be >= 0, got {d}")))?;
            (None, Dest::Offset(start))
        }
        Some(d) => {
            let a = d.cast::<PyUntypedArray>().map_err(|_| {
                PyTypeError::new_err(format!(
                    "dest must be an int or a 1-D int64 array, got {}",
                    type_name(d)
                ))
            })?;
            let dt = a.dtype();
            let dl = layout(a);
            if dt.kind() != b'i' || dt.itemsize() != 8 || dt.is_native_byteorder() == Some(false) {
                return Err(PyTypeError::new_err(format!(
                    "dest has dtype {}, expected int64",
                    describe_dtype(a)
                )));
            }
            if dl.shape.len() != 1 || !dl.is_c_aligned() {
                return Err(PyValueError::new_err(format!(
                    "dest must be a 1-D contiguous int64 array, got shape {} (contiguous: {})",
                    shape_str(dl.shape),
                    dl.is_c_aligned()
                )));
            }
            if overlapping(&extents, dl.data, dl.shape[0] * 8).is_some() {
                return Err(PyValueError::new_err(
                    "dest shares memory with out; pass a separate array",
                ));
            }
            (Some(d.clone()), Dest::Scatter(dl.data, dl.shape[0]))
        }
    };

    let data = ol.data;
    maybe_detach(py, Work::Elements(n * cols.len()), || {
        // SAFETY: every array was checked above (type, contiguity, alignment, lengths), the
        // block shares no memory with what is read, and `_alive`/`_dest_alive` keep them all
        // alive until this returns.
        let views: Vec<Column<'_>> = cols.iter().map(|c| unsafe { c.view() }).collect();
        let rows = match dest_arg {
            Dest::Offset(start) => Rows::Offset(start),
            Dest::Scatter(p, len) => {
                Rows::Scatter(unsafe { std::slice::from_raw_parts(p as *const i64, len) })
            }
        };
        match dtype {
            Dtype::F32 => {
                let out = unsafe { std::slice::from_raw_parts_mut(data as *mut f32, out_len) };
                interleave::interleave(&views, out, rows)
            }
            Dtype::F64 => {
                let out = unsafe { std::slice::from_raw_parts_mut(data as *mut f64, out_len) };
                interleave::interleave(&views, out, rows)
            }
        }
    })?;
    Ok(())
}

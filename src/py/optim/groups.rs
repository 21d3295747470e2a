//! Reading a param group's hyper-parameters: the registry entry's field table, one value
//! per entry, and `lr` (a number or a schedule called with the group's update count).

use numpy::{PyArray1, PyReadonlyArray1, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PySequence, PyString};

use crate::optim::hyper::{self, FieldKind, Hyper, Value};
use crate::py::type_name;

/// Which optimizer's hyper-parameters to read from a param group (its registry entry).
pub(super) type Kind = &'static hyper::Entry;

pub(super) fn parse_kind(s: &str) -> PyResult<Kind> {
    hyper::optimizer(s).ok_or_else(|| PyValueError::new_err(format!("unknown optimizer {s:?}")))
}

/// Reads param group `gi`'s hyper-parameters; a callable `lr` is a schedule, called with
/// the group's update number `step` (0-based).
pub(super) struct GroupReader<'a, 'py> {
    pub(super) group: &'a Bound<'py, PyDict>,
    pub(super) index: usize,
    /// The Python strings of the kind's field keys, made once per engine.
    pub(super) keys: &'a [Py<PyString>],
}

impl<'py> GroupReader<'_, 'py> {
    fn item(&self, key: &Bound<'py, PyString>) -> PyResult<Bound<'py, PyAny>> {
        self.group.get_item(key)?.ok_or_else(|| {
            PyValueError::new_err(format!(
                "param_groups[{}] has no '{}' entry",
                self.index, key
            ))
        })
    }

    fn type_error(
        &self,
        key: &Bound<'py, PyString>,
        expected: &str,
        got: &Bound<'py, PyAny>,
    ) -> PyErr {
        PyTypeError::new_err(format!(
            "param_groups[{}]['{}'] must be {expected}, got {}",
            self.index,
            key,
            type_name(got)
        ))
    }

    fn float(&self, key: &Bound<'py, PyString>) -> PyResult<f64> {
        let v = self.item(key)?;
        if let Ok(f) = v.cast::<PyFloat>() {
            return Ok(f.value());
        }
        if v.is_instance_of::<PyBool>() {
            return Err(self.type_error(key, "a number", &v));
        }
        v.extract::<f64>().map_err(|_| {
            if v.is_instance_of::<PyInt>() {
                PyValueError::new_err(format!(
                    "param_groups[{}]['{}'] is an int too large for a float; expected a number \
                     below about 1.8e308",
                    self.index, key
                ))
            } else {
                self.type_error(key, "a number", &v)
            }
        })
    }

    fn flag(&self, key: &Bound<'py, PyString>) -> PyResult<bool> {
        let v = self.item(key)?;
        v.extract::<bool>()
            .map_err(|_| self.type_error(key, "True or False", &v))
    }

    fn lr(&self, step: u64) -> PyResult<f64> {
        let key = intern!(self.group.py(), "lr");
        let v = self.item(key)?;
        if let Ok(f) = v.cast::<PyFloat>() {
            return Ok(f.value());
        }
        if v.is_callable() && !v.is_instance_of::<PyUntypedArray>() {
            let out = v.call1((step,))?;
            if let Ok(f) = out.cast::<PyFloat>() {
                return Ok(f.value());
            }
            let prefix = format!("the lr schedule of param_groups[{}] returned", self.index);
            if out.is_instance_of::<PyBool>() || type_name(&out) == "bool" {
                return Err(PyTypeError::new_err(format!(
                    "{prefix} bool ({out}) at step {step}, expected a number (True and False \
                     are refused, as lr=True is)"
                )));
            }
            return out.extract::<f64>().map_err(|_| {
                if out.is_instance_of::<PyInt>() {
                    PyValueError::new_err(format!(
                        "{prefix} an int too large for a float at step {step}, expected a number \
                         below about 1.8e308"
                    ))
                } else {
                    PyTypeError::new_err(format!(
                        "{prefix} {} at step {step}, expected a number",
                        type_name(&out)
                    ))
                }
            });
        }
        self.float(key)
    }

    /// The group's lr for its updates `step .. step + n`: a number repeated, or the schedule's
    /// values — called once with the steps as a float64 array when it says it takes arrays
    /// (a true `vectorized` attribute, as `ferroptim.schedules` have), else once per step as
    /// [`GroupReader::lr`] calls it. Each value must be a finite number >= 0.
    pub(super) fn lrs(&self, step: u64, n: usize) -> PyResult<Vec<f64>> {
        let py = self.group.py();
        let v = self.item(intern!(py, "lr"))?;
        let vectorized = v.is_callable()
            && !v.is_instance_of::<PyUntypedArray>()
            && v.getattr_opt(intern!(py, "vectorized"))?
                .is_some_and(|a| a.is_truthy().unwrap_or(false));
        let values: Vec<f64> = if vectorized {
            let steps = PyArray1::from_iter(py, (0..n as u64).map(|k| (step + k) as f64));
            let out = v.call1((steps,))?;
            let array = out
                .extract::<PyReadonlyArray1<'_, f64>>()
                .ok()
                .filter(|a| a.len() == n)
                .ok_or_else(|| {
                    PyTypeError::new_err(format!(
                        "the lr schedule of param_groups[{}] returned {} for the steps {step} to \
                         {}, expected a float64 array of {n} numbers",
                        self.index,
                        type_name(&out),
                        step + n as u64
                    ))
                })?;
            array.as_array().to_vec()
        } else {
            (0..n as u64)
                .map(|k| self.lr(step + k))
                .collect::<PyResult<_>>()?
        };
        if let Some(k) = values.iter().position(|x| !(x.is_finite() && *x >= 0.0)) {
            return Err(PyValueError::new_err(format!(
                "the lr schedule of param_groups[{}] gives {} at step {}; expected a finite \
                 number >= 0",
                self.index,
                values[k],
                step + k as u64
            )));
        }
        Ok(values)
    }

    fn pair(&self, key: &Bound<'py, PyString>) -> PyResult<(f64, f64)> {
        let v = self.item(key)?;
        let expected = "a pair of numbers (beta1, beta2)";
        let seq = v
            .cast::<PySequence>()
            .map_err(|_| self.type_error(key, expected, &v))?;
        if seq.len()? != 2 {
            return Err(self.type_error(key, expected, &v));
        }
        let get = |i: usize| -> PyResult<f64> {
            seq.get_item(i)?
                .extract::<f64>()
                .map_err(|_| self.type_error(key, expected, &v))
        };
        Ok((get(0)?, get(1)?))
    }

    /// One value per entry of `kind`'s field table, then the hyper-parameters built from them.
    pub(super) fn read(&self, kind: Kind, step: u64) -> PyResult<Hyper> {
        let py = self.group.py();
        let lr = self.lr(step)?;
        let mut values = [Value::Flag(false); hyper::MAX_FIELDS];
        for ((value, field), key) in values.iter_mut().zip(kind.fields).zip(self.keys) {
            let key = key.bind(py);
            *value = match field.kind {
                FieldKind::Number => Value::Number(self.float(key)?),
                FieldKind::Flag => Value::Flag(self.flag(key)?),
                FieldKind::Pair => {
                    let (a, b) = self.pair(key)?;
                    Value::Pair(a, b)
                }
            };
        }
        Ok((kind.build)(lr, &values[..kind.fields.len()]))
    }
}

//! MiniBatches' Rust side: the arrays it gathers from (`Batcher`) and one epoch's iterator
//! (`EpochIter`), which gathers the next batch on the thread pool while Python works on the
//! current one.
//!
//! Lifetimes: a background gather reads the source arrays and writes Rust-owned buffers.
//! The iterator holds the arrays (through `Inputs`) for as long as it lives and cancels its
//! pending gather — waiting for tasks already running — before it lets go of them. A batch
//! handed to Python is a NumPy array whose `base` owns its buffer, so it lives as long as
//! the caller keeps it.

use std::collections::VecDeque;
use std::os::raw::{c_int, c_void};
use std::path::PathBuf;
use std::ptr;
use std::sync::{Arc, Mutex, PoisonError};

use numpy::npyffi::{self, npy_intp, NpyTypes, NPY_ARRAY_CARRAY};
use numpy::{
    PyArray1, PyArrayDescr, PyArrayDescrMethods, PyArrayMethods, PyUntypedArray,
    PyUntypedArrayMethods, PY_ARRAY_API,
};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use super::arrays::{describe_dtype, layout, shape_str};
use super::lock::Locked;
use super::{maybe_detach, type_name, Work};
use crate::data::gather::plain_gather;
use crate::data::orders::OrderSpec;
use crate::data::{Buffer, Job, MappedFile, Order, Shuffle, Source};

/// Batches smaller than this are gathered on the calling thread when asked for: handing
/// them to other threads costs more than copying them.
const PREFETCH_MIN_BYTES: usize = 64 << 10;

/// Batches gathered ahead of the one being returned, when a batch is at most
/// `DEEP_PREFETCH_MAX_BYTES` (else one): with two, the pool never runs dry between batches.
const PREFETCH_DEPTH: usize = 2;
const DEEP_PREFETCH_MAX_BYTES: usize = 32 << 20;

/// A source array as checked at construction.
struct Input {
    array: Py<PyUntypedArray>,
    descr: Py<PyArrayDescr>,
    data: usize,
    shape: Vec<usize>,
    strides: Vec<isize>,
    axis: usize,
}

struct Inputs {
    arrays: Vec<Input>,
    /// Objects that must outlive every gather: exports that keep memory maps open.
    _keep_alive: Vec<Py<PyAny>>,
    /// `(i, map, bytes)`: `arrays[i]` reads a memory map of a file that must keep at least
    /// `bytes` bytes (a page past its end would end the process with SIGBUS), checked
    /// through the map with the GIL: the maps whose file could not be opened by name (the
    /// others' sources check their file before each batch).
    maps: Vec<(usize, Py<PyAny>, u64)>,
    sources: Arc<[Source]>,
    samples: usize,
    /// The memory of a finished epoch's permutation, for the next one.
    spare: Mutex<Vec<u64>>,
}

impl Inputs {
    fn take_spare(&self) -> Vec<u64> {
        std::mem::take(&mut *self.spare.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn recycle(&self, order: Order) {
        if let Some(buffer) = order.into_buffer() {
            *self.spare.lock().unwrap_or_else(PoisonError::into_inner) = buffer;
        }
    }

    /// Confirms each array still has the memory and layout the sources describe.
    fn recheck(&self, py: Python<'_>) -> PyResult<()> {
        for (i, input) in self.arrays.iter().enumerate() {
            let l = layout(input.array.bind(py));
            if l.data != input.data || l.shape != input.shape || l.strides != input.strides {
                return Err(PyValueError::new_err(format!(
                    "arrays[{i}] was resized or reshaped in place since MiniBatches was created; \
                     create a new MiniBatches for it"
                )));
            }
        }
        Ok(())
    }

    /// Confirms each memory-mapped file still holds what its map covers (one `fstat`
    /// each, through `mmap.size()`).
    fn check_maps(&self, py: Python<'_>) -> PyResult<()> {
        for (i, map, needed) in &self.maps {
            let size: u64 = map.bind(py).call_method0("size")?.extract()?;
            if size < *needed {
                return Err(PyValueError::new_err(format!(
                    "arrays[{i}] is a memory map of a file that shrank to {size} bytes since it \
                     was mapped (it needs {needed}); reading it would crash, so iteration stops"
                )));
            }
        }
        Ok(())
    }

    fn batch_bytes(&self, rows: usize) -> usize {
        self.sources.iter().map(|s| s.batch_bytes(rows)).sum()
    }

    fn buffers(&self, rows: usize) -> crate::Result<Vec<Arc<Buffer>>> {
        self.sources
            .iter()
            .map(|s| Buffer::new(s.batch_bytes(rows)).map(Arc::new))
            .collect()
    }

    /// The batch as a tuple of NumPy arrays viewing `buffers`, which their bases keep alive.
    fn arrays<'py>(
        &self,
        py: Python<'py>,
        buffers: &[Arc<Buffer>],
        rows: usize,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let arrays = self
            .arrays
            .iter()
            .zip(buffers)
            .map(|(input, buffer)| {
                let mut dims: Vec<npy_intp> = input.shape.iter().map(|&d| d as npy_intp).collect();
                dims[input.axis] = rows as npy_intp;
                let owner = Bound::new(
                    py,
                    BatchMemory {
                        _buffer: Arc::clone(buffer),
                    },
                )?;
                // SAFETY: NewFromDescr steals the descr reference we pass it and views
                // `buffer`, which holds at least the batch's bytes, C-contiguous and aligned;
                // SetBaseObject steals `owner`, which keeps the buffer alive for the array.
                unsafe {
                    let array = PY_ARRAY_API.PyArray_NewFromDescr(
                        py,
                        npyffi::get_type_object(py, NpyTypes::PyArray_Type),
                        input.descr.clone_ref(py).into_ptr().cast(),
                        dims.len() as c_int,
                        dims.as_mut_ptr(),
                        ptr::null_mut(),
                        buffer.as_ptr().cast::<c_void>(),
                        NPY_ARRAY_CARRAY,
                        ptr::null_mut(),
                    );
                    let array = Bound::from_owned_ptr_or_err(py, array)?;
                    if PY_ARRAY_API.PyArray_SetBaseObject(
                        py,
                        array.as_ptr().cast::<npyffi::PyArrayObject>(),
                        owner.into_ptr(),
                    ) < 0
                    {
                        return Err(PyErr::fetch(py));
                    }
                    Ok(array)
                }
            })
            .collect::<PyResult<Vec<_>>>()?;
        PyTuple::new(py, arrays)
    }
}

/// Owns the memory of one array of a batch (the array's `base`).
#[pyclass(module = "ferroptim._core", frozen)]
struct BatchMemory {
    _buffer: Arc<Buffer>,
}

fn check_input(i: usize, obj: &Bound<'_, PyAny>, axis: isize) -> PyResult<(Input, Source)> {
    let a = obj.cast::<PyUntypedArray>().map_err(|_| {
        PyTypeError::new_err(format!(
            "arrays[{i}] must be a numpy.ndarray, got {}",
            type_name(obj)
        ))
    })?;
    let dtype = a.dtype();
    if dtype.has_object() {
        return Err(PyTypeError::new_err(format!(
            "arrays[{i}] has dtype {}, which holds Python objects; batches are gathered as raw \
             bytes, so use a numeric, string or structured dtype without objects",
            describe_dtype(a)
        )));
    }
    let l = layout(a);
    let nd = l.shape.len() as isize;
    if nd == 0 {
        return Err(PyValueError::new_err(format!(
            "arrays[{i}] is 0-dimensional; it has no sample axis"
        )));
    }
    let ax = if axis < 0 { axis + nd } else { axis };
    if !(0..nd).contains(&ax) {
        return Err(PyValueError::new_err(format!(
            "axis {axis} is out of range for arrays[{i}] of shape {}",
            shape_str(l.shape)
        )));
    }
    let ax = ax as usize;
    let source = Source::new(l.data, l.shape, l.strides, dtype.itemsize(), ax)?;
    Ok((
        Input {
            array: a.clone().unbind(),
            descr: dtype.unbind(),
            data: l.data,
            shape: l.shape.to_vec(),
            strides: l.strides.to_vec(),
            axis: ax,
        },
        source,
    ))
}

/// How an epoch's samples are ordered: the arguments of every binding that orders an
/// epoch, given as one dict (`MiniBatches._order_args`: `seed`, `epoch`, `shuffle`, `block_size`,
/// `buffer_blocks`, `shard`).
#[derive(FromPyObject, Clone, Copy, Debug)]
#[pyo3(from_item_all)]
pub(super) struct EpochOrder {
    seed: u64,
    epoch: u64,
    shuffle: bool,
    block_size: Option<usize>,
    buffer_blocks: usize,
    shard: (usize, usize),
}

impl EpochOrder {
    /// The order of `samples` samples this describes.
    pub(super) fn spec(&self, samples: usize) -> OrderSpec {
        let how = match (self.shuffle, self.block_size) {
            (false, _) => Shuffle::None,
            (true, None) => Shuffle::Full,
            (true, Some(block_size)) => Shuffle::Blocks {
                block_size,
                buffer_blocks: self.buffer_blocks,
            },
        };
        OrderSpec {
            samples,
            seed: self.seed,
            epoch: self.epoch,
            how,
            shard: self.shard,
        }
    }
}

/// The arrays a `MiniBatches` gathers from, checked once.
///
/// Built by `ferroptim.MiniBatches`; not meant to be used directly.
#[pyclass(module = "ferroptim._core", frozen)]
pub struct Batcher {
    inputs: Arc<Inputs>,
}

impl Batcher {
    fn order(&self, py: Python<'_>, order: &EpochOrder) -> PyResult<Order> {
        let spec = order.spec(self.inputs.samples);
        let buffer = self.inputs.take_spare();
        Ok(maybe_detach(py, Work::Samples(spec.samples), || {
            spec.build(buffer)
        })?)
    }
}

/// What a fused training loop needs of a `Batcher`.
impl Batcher {
    /// The sources, after confirming the arrays are unchanged (an epoch's order depends
    /// only on the sample count and its arguments, so the loop keeps its own).
    pub(super) fn sources_for_fit(&self, py: Python<'_>) -> PyResult<Arc<[Source]>> {
        self.inputs.recheck(py)?;
        self.inputs.check_maps(py)?;
        Ok(Arc::clone(&self.inputs.sources))
    }

    /// The number of samples the arrays hold.
    pub(super) fn samples(&self) -> usize {
        self.inputs.samples
    }
}

#[pymethods]
impl Batcher {
    #[new]
    #[pyo3(signature = (arrays, axis = 0, keep_alive = Vec::new(), maps = Vec::new()))]
    fn new(
        arrays: Vec<Bound<'_, PyAny>>,
        axis: isize,
        keep_alive: Vec<Py<PyAny>>,
        maps: Vec<(usize, Py<PyAny>, u64, Option<PathBuf>)>,
    ) -> PyResult<Self> {
        if arrays.is_empty() {
            return Err(PyTypeError::new_err("MiniBatches needs at least one array"));
        }
        let (inputs, sources): (Vec<Input>, Vec<Source>) = arrays
            .iter()
            .enumerate()
            .map(|(i, a)| check_input(i, a, axis))
            .collect::<PyResult<Vec<_>>>()?
            .into_iter()
            .unzip();
        let samples = sources[0].samples();
        for (i, (s, input)) in sources.iter().zip(&inputs).enumerate().skip(1) {
            if s.samples() != samples {
                return Err(PyValueError::new_err(format!(
                    "arrays[{i}] has {} samples along axis {axis} (shape {}) but arrays[0] has {samples}",
                    s.samples(),
                    shape_str(&input.shape)
                )));
            }
        }
        if samples == 0 {
            return Err(PyValueError::new_err(format!(
                "the arrays hold no samples (length 0 along axis {axis})"
            )));
        }
        // A mapped file opened again by name is checked (fstat) before each batch is read,
        // without the GIL; one that cannot be opened is checked when each pass starts.
        let mut sources = sources;
        let mut checked = Vec::with_capacity(maps.len());
        for (i, map, bytes, path) in maps {
            match path.and_then(|p| std::fs::File::open(p).ok()) {
                Some(file) if i < sources.len() => {
                    let source = sources[i].clone().mapping(MappedFile::new(file, bytes, i));
                    sources[i] = source;
                }
                _ => checked.push((i, map, bytes)),
            }
        }
        Ok(Batcher {
            inputs: Arc::new(Inputs {
                arrays: inputs,
                _keep_alive: keep_alive,
                maps: checked,
                sources: Arc::from(sources),
                samples,
                spare: Mutex::new(Vec::new()),
            }),
        })
    }

    #[getter]
    fn num_samples(&self) -> usize {
        self.inputs.samples
    }

    /// This shard's samples in epoch `epoch`, in the order batches take them.
    #[pyo3(signature = (order))]
    fn indices<'py>(
        &self,
        py: Python<'py>,
        order: EpochOrder,
    ) -> PyResult<Bound<'py, PyArray1<i64>>> {
        let order = self.order(py, &order)?;
        // In place: the collect reuses the allocation of the u64 vector.
        let indices: Vec<i64> = order.to_vec()?.into_iter().map(|i| i as i64).collect();
        Ok(PyArray1::from_vec(py, indices))
    }

    /// The iterator over epoch `epoch`'s batches, from batch `start` on.
    #[pyo3(signature = (order, *, batch_size, drop_last, start, reuse))]
    fn epoch(
        &self,
        py: Python<'_>,
        order: EpochOrder,
        batch_size: usize,
        drop_last: bool,
        start: usize,
        reuse: bool,
    ) -> PyResult<EpochIter> {
        if batch_size == 0 {
            return Err(PyValueError::new_err("batch_size must be at least 1"));
        }
        let epoch = order.epoch;
        let order = self.order(py, &order)?;
        let len = order.len();
        let num_batches = order.num_batches(batch_size, drop_last);
        if start > num_batches {
            return Err(PyValueError::new_err(format!(
                "cannot start epoch {epoch} at batch {start}: it has {num_batches} batches"
            )));
        }
        let rows = batch_size.min(len);
        let depth = if self.inputs.batch_bytes(rows) <= DEEP_PREFETCH_MAX_BYTES {
            PREFETCH_DEPTH
        } else {
            1
        };
        let reuse = if reuse {
            Some(
                (0..=depth)
                    .map(|_| self.inputs.buffers(rows))
                    .collect::<crate::Result<Vec<_>>>()?,
            )
        } else {
            None
        };
        let mut it = EpochState {
            inputs: Arc::clone(&self.inputs),
            order,
            epoch,
            batch_size,
            num_batches,
            position: start,
            depth,
            pending: VecDeque::new(),
            reuse,
        };
        it.top_up(py, start);
        Ok(EpochIter {
            state: Locked::new(it),
        })
    }
}

/// One epoch of batches: tuples of NumPy arrays, one per source array. Threads sharing
/// one take turns: each batch goes to exactly one of them.
///
/// Made by `MiniBatches.__iter__`; not meant to be built directly.
#[pyclass(module = "ferroptim._core", frozen)]
pub struct EpochIter {
    state: Locked<EpochState>,
}

const WHAT: &str = "this epoch's iterator";

struct EpochState {
    inputs: Arc<Inputs>,
    order: Order,
    epoch: u64,
    batch_size: usize,
    num_batches: usize,
    position: usize,
    /// Batches gathered ahead.
    depth: usize,
    /// Background gathers of batches `first, first + 1, ...`, where `first` is `position`
    /// between calls.
    pending: VecDeque<Arc<Job>>,
    /// Reuse mode: `depth + 1` buffer sets; batch `k` is gathered into set `k % (depth + 1)`,
    /// so the batch the caller holds is overwritten only once it asks for the next one.
    reuse: Option<Vec<Vec<Arc<Buffer>>>>,
}

impl EpochState {
    fn rows(&self, k: usize) -> std::ops::Range<usize> {
        let start = k * self.batch_size;
        start..(start + self.batch_size).min(self.order.len())
    }

    fn job(&self, py: Python<'_>, k: usize) -> PyResult<Arc<Job>> {
        self.inputs.check_maps(py)?;
        let rows = self.rows(k);
        let buffers = match &self.reuse {
            Some(sets) => sets[k % sets.len()].clone(),
            None => self.inputs.buffers(rows.len())?,
        };
        // SAFETY: `self.inputs` keeps the arrays (and memory maps) alive and `Drop` cancels
        // pending jobs before letting go of them; `order` is a permutation of the samples.
        let job = unsafe {
            Job::new(
                Arc::clone(&self.inputs.sources),
                self.order.batch(rows)?,
                buffers,
            )?
        };
        Ok(Arc::new(job))
    }

    fn is_large(&self, k: usize) -> bool {
        self.inputs.batch_bytes(self.rows(k).len()) >= PREFETCH_MIN_BYTES
    }

    /// Starts gathering on the pool the batches after those pending, up to `depth` from
    /// `first` (the first pending one), skipping batches too small to be worth handing over.
    /// A failed allocation is not reported here: that batch is then gathered when asked for,
    /// and the error raised there.
    fn top_up(&mut self, py: Python<'_>, first: usize) {
        loop {
            let k = first + self.pending.len();
            if self.pending.len() >= self.depth || k >= self.num_batches || !self.is_large(k) {
                return;
            }
            match self.job(py, k) {
                Ok(job) => {
                    job.spawn();
                    self.pending.push_back(job);
                }
                Err(_) => return,
            }
        }
    }

    fn cancel_pending(&mut self) {
        for job in self.pending.drain(..) {
            job.cancel();
        }
    }
}

impl Drop for EpochState {
    fn drop(&mut self) {
        self.cancel_pending();
        self.inputs
            .recycle(std::mem::replace(&mut self.order, Order::empty()));
    }
}

impl EpochState {
    fn next<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyTuple>>> {
        let k = self.position;
        if k >= self.num_batches {
            return Ok(None);
        }
        self.inputs.recheck(py)?;
        if let Err(e) = self.inputs.check_maps(py) {
            // Gathers not started yet would read past the end of the file.
            self.cancel_pending();
            return Err(e);
        }
        let large = self.is_large(k);
        let job = if let Some(job) = self.pending.pop_front() {
            job
        } else {
            let job = self.job(py, k)?;
            if large {
                job.spawn();
            }
            job
        };
        self.top_up(py, k + 1);
        let finished = if large && !job.is_done() {
            let next = self.pending.front();
            py.detach(|| job.finish(next.map(|j| &**j)))
        } else {
            job.finish(None)
        };
        let buffers = finished.inspect_err(|_| {
            // Keep `pending` starting at `position`: batch k is gathered again next time.
            self.cancel_pending();
        })?;
        let rows = self.rows(k).len();
        self.position += 1;
        if self.position == self.num_batches {
            // Done with the permutation: the next epoch may reuse its memory.
            self.inputs
                .recycle(std::mem::replace(&mut self.order, Order::empty()));
        }
        Ok(Some(self.inputs.arrays(py, &buffers, rows)?))
    }
}

#[pymethods]
impl EpochIter {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyTuple>>> {
        self.state.lock(py, WHAT)?.next(py)
    }

    fn __length_hint__(&self, py: Python<'_>) -> PyResult<usize> {
        let st = self.state.lock(py, WHAT)?;
        Ok(st.num_batches - st.position)
    }

    /// The epoch these batches belong to.
    #[getter]
    fn epoch(&self, py: Python<'_>) -> PyResult<u64> {
        Ok(self.state.lock(py, WHAT)?.epoch)
    }

    /// Batches already returned in this epoch (including those skipped by a resume).
    #[getter]
    fn position(&self, py: Python<'_>) -> PyResult<usize> {
        Ok(self.state.lock(py, WHAT)?.position)
    }

    /// Batches in this epoch.
    #[getter]
    fn num_batches(&self, py: Python<'_>) -> PyResult<usize> {
        Ok(self.state.lock(py, WHAT)?.num_batches)
    }
}

/// Benchmark reference: copies rows `indices` of each C-contiguous array in `arrays` with
/// `threads` plain threads, `batch_size` rows at a time, into per-thread reused buffers.
/// Returns a checksum.
#[pyfunction]
pub fn _plain_gather(
    py: Python<'_>,
    arrays: Vec<Bound<'_, PyUntypedArray>>,
    indices: &Bound<'_, PyAny>,
    batch_size: usize,
    threads: usize,
) -> PyResult<u64> {
    let indices = indices
        .cast::<PyArray1<i64>>()
        .map_err(|_| PyTypeError::new_err("indices must be a 1-d int64 array"))?
        .try_readonly()?;
    let indices = indices
        .as_slice()
        .map_err(|_| PyValueError::new_err("indices must be contiguous"))?;
    let mut described = Vec::with_capacity(arrays.len());
    for a in &arrays {
        let l = layout(a);
        if l.flags & npyffi::NPY_ARRAY_C_CONTIGUOUS == 0 || l.shape.is_empty() {
            return Err(PyValueError::new_err(
                "arrays must be C-contiguous with at least one dimension",
            ));
        }
        let rows = l.shape[0];
        if indices.iter().any(|&i| i < 0 || i as usize >= rows) {
            return Err(PyValueError::new_err(format!(
                "indices must be in [0, {rows})"
            )));
        }
        let row_bytes = l.shape[1..].iter().product::<usize>() * a.dtype().itemsize();
        described.push((l.data, row_bytes));
    }
    // SAFETY: every index is a non-negative i64 below each array's row count, so reading it
    // as u64 gives the same value; `arrays` keeps the rows readable.
    let indices =
        unsafe { std::slice::from_raw_parts(indices.as_ptr().cast::<u64>(), indices.len()) };
    Ok(py.detach(|| unsafe { plain_gather(&described, indices, batch_size, threads) }))
}

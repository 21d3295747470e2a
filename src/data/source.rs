//! The arrays batches are gathered from: a base address and strides per axis, and for a
//! memory map the file under it, checked before each batch is read.

use std::fs::File;
use std::ops::Range;
use std::ptr;
use std::sync::Arc;

use crate::error::{Error, Result};

use super::gather::{prefetch, Split, PREFETCH_AHEAD, TASK_BYTES};

/// The file under a memory-mapped source, which must keep `bytes` bytes: a page read past
/// its end ends the process with SIGBUS. Checked (one `fstat`) before each batch is read.
#[derive(Debug)]
pub struct MappedFile {
    file: File,
    bytes: u64,
    /// The source's index, for the message.
    index: usize,
}

impl MappedFile {
    /// `file` must be the mapped file; `bytes` the end of the map in it.
    pub fn new(file: File, bytes: u64, index: usize) -> Self {
        MappedFile { file, bytes, index }
    }

    /// An error if the file no longer holds the map's extent.
    pub fn check(&self) -> Result<()> {
        let i = self.index;
        let size = self.file.metadata().map(|m| m.len()).map_err(|e| {
            Error::Invalid(format!(
                "arrays[{i}] is a memory map whose file could not be checked ({e}); reading it \
                 could crash, so iteration stops"
            ))
        })?;
        if size < self.bytes {
            return Err(Error::Invalid(format!(
                "arrays[{i}] is a memory map of a file that shrank to {size} bytes since it was \
                 mapped (it needs {}); reading it would crash, so iteration stops",
                self.bytes
            )));
        }
        Ok(())
    }
}

/// An array to gather samples from, described by its memory layout alone.
///
/// A batch of `rows` samples has the array's shape with the sample axis set to `rows`, in C
/// order. Its bytes are laid out as `(outer, rows, inner)` units of `run` contiguous bytes:
/// `outer` and `inner` hold the byte offsets of the positions before and after the sample
/// axis (the trailing dims that are contiguous in the source are folded into `run`).
#[derive(Clone, Debug)]
pub struct Source {
    base: usize,
    samples: usize,
    sample_stride: isize,
    pub(super) outer: Vec<isize>,
    inner: Vec<isize>,
    run: usize,
    /// Loop over samples outermost: when one sample's units are close together (row-major
    /// samples), each sample's memory is then read in one go.
    sample_major: bool,
    /// The file under the array, when it is a memory map.
    file: Option<Arc<MappedFile>>,
}

/// Byte offsets of every position of `dims` (length, byte stride), in C order.
fn offsets(dims: &[(usize, isize)]) -> Vec<isize> {
    dims.iter().fold(vec![0], |acc, &(len, stride)| {
        acc.iter()
            .flat_map(|&o| (0..len).map(move |k| o + k as isize * stride))
            .collect()
    })
}

impl Source {
    /// The array at address `base` with this shape, byte strides and item size, sampled
    /// along `axis`.
    pub fn new(
        base: usize,
        shape: &[usize],
        strides: &[isize],
        itemsize: usize,
        axis: usize,
    ) -> Result<Self> {
        if shape.len() != strides.len() || axis >= shape.len() {
            return Err(Error::Mismatch(format!(
                "axis {axis} of a {}-d array with {} strides",
                shape.len(),
                strides.len()
            )));
        }
        let empty = shape
            .iter()
            .enumerate()
            .any(|(d, &len)| d != axis && len == 0);
        let dims = |r: Range<usize>| -> Vec<(usize, isize)> {
            shape[r.clone()]
                .iter()
                .zip(&strides[r])
                .filter(|(&len, _)| len != 1)
                .map(|(&len, &stride)| (len, stride))
                .collect()
        };
        let outer_dims = dims(0..axis);
        let mut inner_dims = dims(axis + 1..shape.len());
        let mut run = itemsize;
        while let Some(&(len, stride)) = inner_dims.last() {
            if stride != run as isize {
                break;
            }
            run *= len;
            inner_dims.pop();
        }
        let sample_stride = strides[axis];
        let widest_outer = outer_dims
            .iter()
            .map(|d| d.1.unsigned_abs())
            .max()
            .unwrap_or(0);
        Ok(Source {
            base,
            samples: shape[axis],
            sample_stride,
            outer: if empty {
                Vec::new()
            } else {
                offsets(&outer_dims)
            },
            inner: offsets(&inner_dims),
            run,
            sample_major: sample_stride.unsigned_abs() >= widest_outer,
            file: None,
        })
    }

    /// This source reading a memory map of `file`, checked before each batch.
    pub fn mapping(mut self, file: MappedFile) -> Self {
        self.file = Some(Arc::new(file));
        self
    }

    /// An error if the array is a memory map whose file shrank below the map.
    pub fn check_file(&self) -> Result<()> {
        self.file.as_deref().map_or(Ok(()), MappedFile::check)
    }

    pub fn samples(&self) -> usize {
        self.samples
    }

    /// Hints the CPU to fetch (the first cache lines of) each unit of sample `sample`.
    pub fn prefetch_sample(&self, sample: usize) {
        let base = self.base as *const u8;
        let first_unit = self.inner.first().copied().unwrap_or(0);
        for &o in &self.outer {
            prefetch(
                base.wrapping_offset(o + sample as isize * self.sample_stride + first_unit),
                self.run,
            );
        }
    }

    /// Copies the batch whose row `i` is sample `samples[i]` into `out`, on this thread (a
    /// [`Job`] without the tasks, for batches too small to share); an error, before
    /// reading, if the array's file shrank below its memory map.
    ///
    /// # Safety
    /// As [`Job::new`]: the source memory stays readable for the call and every sample is
    /// below `samples()`; `out` holds `batch_bytes(samples.len())` bytes.
    pub unsafe fn gather(&self, out: *mut u8, samples: &[u64]) -> Result<()> {
        self.check_file()?;
        let n = samples.len();
        if self.sample_bytes() == 0 {
            return Ok(());
        }
        if let ([o], [i]) = (&self.outer[..], &self.inner[..]) {
            // Each sample is one run of bytes (row-major rows, 1-d labels): one move per row.
            let first = (self.base as *const u8).wrapping_offset(o + i);
            match self.run {
                4 => self.gather_runs::<4>(first, out, samples),
                8 => self.gather_runs::<8>(first, out, samples),
                16 => self.gather_runs::<16>(first, out, samples),
                _ => self.copy(out, n, 0..1, 0..n, &|i| samples[i] as usize),
            }
            return Ok(());
        }
        self.copy(out, n, 0..self.outer.len(), 0..n, &|i| samples[i] as usize);
        Ok(())
    }

    /// [`Source::gather`] of a source whose samples are single runs of `N` bytes, the first
    /// at `first`: row `r` of `out` is the run of sample `samples[r]`.
    ///
    /// # Safety
    /// As [`Source::gather`].
    #[inline(always)]
    unsafe fn gather_runs<const N: usize>(&self, first: *const u8, out: *mut u8, samples: &[u64]) {
        let stride = self.sample_stride;
        let at = |s: u64| first.wrapping_offset(s as isize * stride);
        for (r, &s) in samples.iter().enumerate() {
            if let Some(&ahead) = samples.get(r + PREFETCH_AHEAD) {
                prefetch(at(ahead), N);
            }
            ptr::copy_nonoverlapping(at(s), out.add(r * N), N);
        }
    }

    /// Bytes of one sample.
    fn sample_bytes(&self) -> usize {
        self.outer.len() * self.inner.len() * self.run
    }

    /// Bytes of a batch of `rows` samples.
    pub fn batch_bytes(&self, rows: usize) -> usize {
        self.sample_bytes() * rows
    }

    /// Copies the units at outer positions `o` and batch rows `r` of a batch of `rows`
    /// samples; row `i` of the batch is sample `sample(i)`.
    ///
    /// # Safety
    /// The source memory must be readable as described and `out` must hold the batch.
    #[inline(always)]
    unsafe fn copy_block<const N: usize>(
        &self,
        out: *mut u8,
        rows: usize,
        o: Range<usize>,
        r: Range<usize>,
        sample: &impl Fn(usize) -> usize,
    ) {
        let (run, units) = (self.run, self.inner.len());
        let base = self.base as *const u8;
        let first_unit = self.inner.first().copied().unwrap_or(0);
        let at = |o: usize, i: usize| {
            base.wrapping_offset(self.outer[o] + sample(i) as isize * self.sample_stride)
        };
        let copy = |src: *const u8, o: usize, r: usize| {
            let dst = out.add((o * rows + r) * units * run);
            for (i, &off) in self.inner.iter().enumerate() {
                // N is the run length when known at compile time, so small copies are moves.
                let len = if N == 0 { run } else { N };
                ptr::copy_nonoverlapping(src.offset(off), dst.add(i * run), len);
            }
        };
        let end = r.end;
        if self.sample_major {
            for r in r {
                if r + PREFETCH_AHEAD < end {
                    prefetch(
                        at(o.start, r + PREFETCH_AHEAD).wrapping_offset(first_unit),
                        run,
                    );
                }
                for o in o.clone() {
                    copy(at(o, r), o, r);
                }
            }
        } else {
            for o in o {
                for r in r.clone() {
                    if r + PREFETCH_AHEAD < end {
                        prefetch(at(o, r + PREFETCH_AHEAD).wrapping_offset(first_unit), run);
                    }
                    copy(at(o, r), o, r);
                }
            }
        }
    }

    /// # Safety
    /// As `copy_block`.
    pub(super) unsafe fn copy(
        &self,
        out: *mut u8,
        rows: usize,
        o: Range<usize>,
        r: Range<usize>,
        sample: &impl Fn(usize) -> usize,
    ) {
        match self.run {
            1 => self.copy_block::<1>(out, rows, o, r, sample),
            2 => self.copy_block::<2>(out, rows, o, r, sample),
            4 => self.copy_block::<4>(out, rows, o, r, sample),
            8 => self.copy_block::<8>(out, rows, o, r, sample),
            16 => self.copy_block::<16>(out, rows, o, r, sample),
            _ => self.copy_block::<0>(out, rows, o, r, sample),
        }
    }

    /// How a batch of `rows` samples is cut into tasks of about `TASK_BYTES`.
    pub(super) fn split(&self, rows: usize) -> Split {
        let unit = self.inner.len() * self.run;
        let sample = self.sample_bytes();
        if sample == 0 || rows == 0 {
            return Split::default();
        }
        let rows_per = (TASK_BYTES / sample).clamp(1, rows);
        let outer_per = if sample > TASK_BYTES {
            (TASK_BYTES / unit.max(1)).clamp(1, self.outer.len())
        } else {
            self.outer.len()
        };
        Split {
            rows_per,
            outer_per,
            row_tasks: rows.div_ceil(rows_per),
            tasks: rows.div_ceil(rows_per) * self.outer.len().div_ceil(outer_per),
        }
    }
}

//! The batches' memory: 64-byte-aligned blocks the gather writes and NumPy arrays view.

use std::alloc::{self, Layout};
use std::ptr::NonNull;

use crate::error::{Error, Result};

/// A 64-byte-aligned, uninitialised heap block the gather writes and NumPy arrays may view.
pub struct Buffer {
    ptr: NonNull<u8>,
    len: usize,
}

pub(super) const BUFFER_ALIGN: usize = 64;

#[repr(align(64))]
struct CacheLine;
const _: () = assert!(std::mem::align_of::<CacheLine>() == BUFFER_ALIGN);

// SAFETY: a plain heap block; who writes it when is governed by `Job`.
unsafe impl Send for Buffer {}
unsafe impl Sync for Buffer {}

impl Buffer {
    pub fn new(len: usize) -> Result<Self> {
        if len == 0 {
            return Ok(Buffer {
                ptr: NonNull::<CacheLine>::dangling().cast(),
                len,
            });
        }
        let oom = || Error::OutOfMemory {
            what: "a batch".into(),
            bytes: len,
        };
        let layout = Layout::from_size_align(len, BUFFER_ALIGN).map_err(|_| oom())?;
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc::alloc(layout) };
        NonNull::new(ptr)
            .map(|ptr| Buffer { ptr, len })
            .ok_or_else(oom)
    }

    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: allocated in `new` with this layout.
            unsafe {
                alloc::dealloc(
                    self.ptr.as_ptr(),
                    Layout::from_size_align_unchecked(self.len, BUFFER_ALIGN),
                );
            }
        }
    }
}

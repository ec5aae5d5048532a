//! The glue every C++ shim (`csrc/`) shares: a call reports failure
//! through a `char **error` out-parameter holding a malloc'd message, which
//! [`checked`] turns into an `Err` and frees.

use anyhow::{anyhow, Result};
use std::ffi::{c_char, CStr};

extern "C" {
    fn meltr_shim_free(message: *mut c_char);
}

/// Runs a shim call, passing it the error out-parameter, and turns the
/// message it may leave there into an `Err` (first line: libtorch appends
/// a C++ backtrace).
pub fn checked<T>(call: impl FnOnce(*mut *mut c_char) -> T) -> Result<T> {
    let mut error: *mut c_char = std::ptr::null_mut();
    let value = call(&mut error);
    if error.is_null() {
        return Ok(value);
    }
    // SAFETY: the shim returns a NUL-terminated malloc'd string, freed
    // once, here.
    let message = unsafe { CStr::from_ptr(error) }
        .to_string_lossy()
        .into_owned();
    unsafe { meltr_shim_free(error) };
    Err(anyhow!("{}", crate::nn::autograd::first_line(&message)))
}

//! A TorchScript module's buffers (BatchNorm's running statistics, counters),
//! through `csrc/module_buffers.cpp`: tch lists only parameters.

use crate::ffi::checked;
use anyhow::Result;
use std::ffi::{c_char, c_void, CStr};
use tch::{CModule, Tensor};

extern "C" {
    fn meltr_module_buffers(
        module: *mut c_void,
        data: *mut c_void,
        each: unsafe extern "C" fn(*mut c_void, *const c_char, *mut c_void),
        error: *mut *mut c_char,
    );
}

// tch's CModule is one pointer to the torch::jit::Module it owns (tch 0.24,
// `wrappers/jit.rs`: `c_module: *mut CModule_`), which the shim reads.
const _: () = assert!(std::mem::size_of::<CModule>() == std::mem::size_of::<*mut c_void>());

/// The module's buffers, submodules' included, by their dotted names, as
/// tensors sharing the module's storage (writing one writes the module's).
pub fn named_buffers(module: &CModule) -> Result<Vec<(String, Tensor)>> {
    unsafe extern "C" fn push(data: *mut c_void, name: *const c_char, tensor: *mut c_void) {
        // SAFETY: `data` is the Vec below, alive for the call; `name` is a
        // NUL-terminated string; `tensor` a new torch::Tensor* we own.
        let list = &mut *(data as *mut Vec<(String, Tensor)>);
        let name = CStr::from_ptr(name).to_string_lossy().into_owned();
        list.push((name, Tensor::from_ptr(tensor as *mut torch_sys::C_tensor)));
    }
    // SAFETY: a copy of the handle's one pointer (see the size check above);
    // the module stays owned by `module`, borrowed for the call.
    let handle: *mut c_void = unsafe { std::mem::transmute_copy(module) };
    let mut list: Vec<(String, Tensor)> = Vec::new();
    checked(|error| unsafe {
        meltr_module_buffers(
            handle,
            &mut list as *mut Vec<(String, Tensor)> as *mut c_void,
            push,
            error,
        )
    })?;
    Ok(list)
}

/// `module` moved to `device` and its floating-point state cast to `kind`,
/// as PyTorch's `nn.Module.to` does: torch::jit::Module::to casts every
/// buffer, so an integer one (BatchNorm's `num_batches_tracked`, a counter)
/// came back float32 in an exported model (walkthrough G).
pub fn move_and_cast(module: &mut CModule, device: tch::Device, kind: tch::Kind) -> Result<()> {
    let integer: Vec<(String, Tensor)> = named_buffers(module)?
        .into_iter()
        .filter(|(_, t)| !t.is_floating_point())
        .map(|(name, t)| (name, t.to_device(device).copy()))
        .collect();
    module.to(device, kind, false);
    if integer.is_empty() {
        return Ok(());
    }
    for (name, mut moved) in named_buffers(module)? {
        if let Some((_, kept)) = integer.iter().find(|(n, _)| *n == name) {
            moved.set_data(kept);
        }
    }
    Ok(())
}

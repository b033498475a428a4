//! The compute device. Backends are cargo features (`flex`, the default CPU backend;
//! `ndarray`; `wgpu`; `cuda`); the device is picked at run time:
//!
//! `NCODEC_DEVICE` = `flex` | `ndarray` | `wgpu` (first discrete GPU) | `wgpu-cpu` (lavapipe,
//! tests only) | `cuda`; unset = the first CPU backend compiled in.

use burn::prelude::Device;

/// Name of the backend [`device`] returns, for logs and cards.
pub fn name() -> &'static str {
    select().0
}

/// The device every codec and training run uses.
pub fn device() -> Device {
    select().1
}

/// Resolves `NCODEC_DEVICE` once, so the reported name is always the device in use.
fn select() -> (&'static str, Device) {
    match std::env::var("NCODEC_DEVICE").as_deref() {
        #[cfg(feature = "flex")]
        Ok("flex") => ("flex", Device::flex()),
        #[cfg(feature = "ndarray")]
        #[allow(deprecated)]
        Ok("ndarray") => ("ndarray", Device::ndarray()),
        #[cfg(feature = "wgpu")]
        Ok("wgpu") => ("wgpu", Device::wgpu(burn::tensor::DeviceKind::DiscreteGpu(0))),
        #[cfg(feature = "wgpu")]
        Ok("wgpu-cpu") => ("wgpu-cpu", Device::wgpu(burn::tensor::DeviceKind::Cpu)),
        #[cfg(feature = "cuda")]
        Ok("cuda") => ("cuda", Device::cuda(0)),
        Ok(other) => {
            eprintln!("warning: NCODEC_DEVICE={other} is not compiled in; using the default CPU backend");
            default_device()
        }
        Err(_) => default_device(),
    }
}

fn default_device() -> (&'static str, Device) {
    #[cfg(feature = "flex")]
    return ("flex", Device::flex());
    #[cfg(all(not(feature = "flex"), feature = "ndarray"))]
    #[allow(deprecated)]
    return ("ndarray", Device::ndarray());
    #[cfg(all(not(feature = "flex"), not(feature = "ndarray")))]
    ("default", Device::default())
}

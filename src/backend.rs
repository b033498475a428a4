//! The compute device. Backends are cargo features (`flex`, the default CPU backend;
//! `ndarray`; `wgpu`; `cuda`); the device is picked at run time:
//!
//! `NCODEC_DEVICE` = `flex` | `ndarray` | `wgpu` (first discrete GPU) | `wgpu-cpu` (lavapipe,
//! tests only) | `cuda`; unset = the first CPU backend compiled in.

use burn::prelude::Device;

/// Name of the backend [`device`] returns, for logs and cards.
pub fn name() -> String {
    std::env::var("NCODEC_DEVICE").unwrap_or_else(|_| default_name().to_string())
}

fn default_name() -> &'static str {
    if cfg!(feature = "flex") {
        "flex"
    } else if cfg!(feature = "ndarray") {
        "ndarray"
    } else {
        "default"
    }
}

/// The device every codec and training run uses.
pub fn device() -> Device {
    match std::env::var("NCODEC_DEVICE").as_deref() {
        #[cfg(feature = "flex")]
        Ok("flex") => Device::flex(),
        #[cfg(feature = "ndarray")]
        #[allow(deprecated)]
        Ok("ndarray") => Device::ndarray(),
        #[cfg(feature = "wgpu")]
        Ok("wgpu") => Device::wgpu(burn::tensor::DeviceKind::DiscreteGpu(0)),
        #[cfg(feature = "wgpu")]
        Ok("wgpu-cpu") => Device::wgpu(burn::tensor::DeviceKind::Cpu),
        #[cfg(feature = "cuda")]
        Ok("cuda") => Device::cuda(0),
        Ok(other) => {
            eprintln!("warning: NCODEC_DEVICE={other} is not compiled in; using {}", default_name());
            default_device()
        }
        Err(_) => default_device(),
    }
}

fn default_device() -> Device {
    #[cfg(feature = "flex")]
    return Device::flex();
    #[cfg(all(not(feature = "flex"), feature = "ndarray"))]
    #[allow(deprecated)]
    return Device::ndarray();
    #[cfg(all(not(feature = "flex"), not(feature = "ndarray")))]
    Device::default()
}

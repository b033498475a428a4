//! The compute backend, chosen at build time by cargo feature (see README: backend figures).

use burn::prelude::Device;

#[cfg(feature = "flex")]
pub const NAME: &str = "flex";
#[cfg(all(not(feature = "flex"), feature = "ndarray"))]
pub const NAME: &str = "ndarray";
#[cfg(all(not(feature = "flex"), not(feature = "ndarray")))]
pub const NAME: &str = "default";

/// The CPU device every codec runs on by default.
pub fn device() -> Device {
    #[cfg(feature = "flex")]
    {
        Device::flex()
    }
    #[cfg(all(not(feature = "flex"), feature = "ndarray"))]
    {
        Device::ndarray()
    }
    #[cfg(all(not(feature = "flex"), not(feature = "ndarray")))]
    {
        Device::default()
    }
}

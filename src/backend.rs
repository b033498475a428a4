//! The compute device the float transforms run on, chosen at run time.
//!
//! Only g_a (encoder) and g_s (pixels) and training use it: entropy coding is integer work on
//! the CPU, so a stream decodes to the same latent whatever backend either side picked.
//!
//! | `--backend` / `NCODEC_DEVICE` | device |
//! |---|---|
//! | `auto` (CLI default) | CUDA GPU if built with `cuda`, else a wgpu GPU, else `cpu` |
//! | `cpu` (alias `flex`) | burn-flex, the CPU backend |
//! | `ndarray` | burn-ndarray (feature `ndarray`; deprecated, slow) |
//! | `wgpu` | the best wgpu adapter: a GPU, else a software Vulkan device (Mesa lavapipe) |
//! | `wgpu-cpu` | the software Vulkan device only (tests) |
//! | `vulkan` | the first GPU through wgpu pinned to Vulkan: SPIR-V kernels (feature `vulkan`) |
//! | `cuda` | CUDA GPU 0 (feature `cuda`) |
//! | `tch` (alias `libtorch`) | LibTorch on the CPU through burn-tch (feature `tch`) |
//! | `tch-cuda` | LibTorch on CUDA GPU 0 (feature `tch`, a CUDA build of libtorch) |
//!
//! GPU builds (features `gpu-kernels`, `gpu`, `vulkan`, `cuda`) turn on burn's autotune and
//! kernel fusion; with `gpu` or `cuda` the autotune results persist on disk, so only the first
//! process on a machine tunes.

use std::sync::OnceLock;

use burn::prelude::Device;

use crate::error::{Error, Result};

/// A backend request, as the user spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Auto,
    Cpu,
    Ndarray,
    Wgpu,
    WgpuCpu,
    Vulkan,
    Cuda,
    Tch,
    TchCuda,
}

impl std::str::FromStr for Backend {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "auto" => Self::Auto,
            "cpu" | "flex" => Self::Cpu,
            "ndarray" => Self::Ndarray,
            "wgpu" => Self::Wgpu,
            "wgpu-cpu" | "lavapipe" => Self::WgpuCpu,
            "vulkan" => Self::Vulkan,
            "cuda" => Self::Cuda,
            "tch" | "libtorch" => Self::Tch,
            "tch-cuda" => Self::TchCuda,
            _ => return Err(Error::Unsupported(format!("unknown backend '{s}' (auto, cpu, ndarray, wgpu, wgpu-cpu, vulkan, cuda, tch, tch-cuda)"))),
        })
    }
}

/// A resolved device and what to call it in logs, cards and benchmark reports.
#[derive(Debug, Clone)]
pub struct Selected {
    pub name: String,
    pub device: Device,
}

impl Backend {
    /// The backend named by `NCODEC_DEVICE`, else `cpu` (library default: no device probing).
    pub fn from_env() -> Result<Self> {
        match std::env::var("NCODEC_DEVICE") {
            Ok(v) => v.parse(),
            Err(_) => Ok(Self::Cpu),
        }
    }

    /// Finds the device, or says clearly why this build or machine has none.
    pub fn select(self) -> Result<Selected> {
        let not_built = |f: &str| Error::Unsupported(format!("backend '{f}' is not compiled in (cargo feature `{f}`)"));
        match self {
            Self::Cpu => cpu(),
            Self::Ndarray => {
                #[cfg(feature = "ndarray")]
                #[allow(deprecated)]
                return Ok(Selected { name: "ndarray".into(), device: Device::ndarray() });
                #[allow(unreachable_code)]
                Err(not_built("ndarray"))
            }
            Self::Cuda => {
                #[cfg(feature = "cuda")]
                return Ok(Selected { name: "cuda".into(), device: Device::cuda(0) });
                #[allow(unreachable_code)]
                Err(not_built("cuda"))
            }
            // burn-tch is deprecated (gone in burn 0.23): kept as the libtorch speed reference.
            Self::Tch => {
                #[cfg(feature = "tch")]
                #[allow(deprecated)]
                return Ok(Selected { name: "libtorch CPU".into(), device: Device::libtorch() });
                #[allow(unreachable_code)]
                Err(not_built("tch"))
            }
            Self::TchCuda => {
                #[cfg(feature = "tch")]
                #[allow(deprecated)]
                return Ok(Selected { name: "libtorch CUDA 0".into(), device: Device::libtorch_cuda(0) });
                #[allow(unreachable_code)]
                Err(not_built("tch"))
            }
            Self::Vulkan => {
                #[cfg(feature = "vulkan")]
                return match wgpu_gpu() {
                    Some(_) => Ok(Selected { name: "vulkan (SPIR-V)".into(), device: Device::vulkan(burn::tensor::DeviceKind::DefaultDevice) }),
                    None => Err(Error::Unsupported("backend 'vulkan': no GPU adapter found".into())),
                };
                #[allow(unreachable_code)]
                Err(not_built("vulkan"))
            }
            Self::Wgpu | Self::WgpuCpu => {
                #[cfg(feature = "wgpu")]
                return wgpu_adapter(self == Self::WgpuCpu);
                #[allow(unreachable_code)]
                Err(not_built("wgpu"))
            }
            Self::Auto => {
                #[cfg(feature = "cuda")]
                if !Device::enumerate(burn::tensor::DeviceType::Cuda).is_empty() {
                    return Self::Cuda.select();
                }
                #[cfg(feature = "wgpu")]
                if let Some(gpu) = wgpu_gpu() {
                    return Ok(gpu);
                }
                cpu()
            }
        }
    }
}

/// The CPU model, thread count and default backend, as cards and bench reports record them.
pub fn hardware_description() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string()))
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cpu}, {} threads, burn {} backend", rayon::current_num_threads(), name())
}

fn cpu() -> Result<Selected> {
    #[cfg(feature = "flex")]
    return Ok(Selected { name: "flex".into(), device: Device::flex() });
    #[cfg(all(not(feature = "flex"), feature = "ndarray"))]
    #[allow(deprecated)]
    return Ok(Selected { name: "ndarray".into(), device: Device::ndarray() });
    #[allow(unreachable_code)]
    Err(Error::Unsupported("no CPU backend compiled in (cargo feature `flex`)".into()))
}

/// The adapters wgpu sees, as (kind, name). Probed once per process.
#[cfg(feature = "wgpu")]
fn adapters() -> &'static [(wgpu::DeviceType, String)] {
    static ADAPTERS: OnceLock<Vec<(wgpu::DeviceType, String)>> = OnceLock::new();
    ADAPTERS.get_or_init(|| {
        let _quiet = QuietStderr::on_headless();
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
        let found = futures_lite::future::block_on(instance.enumerate_adapters(wgpu::Backends::PRIMARY));
        found.iter().map(|a| a.get_info()).map(|i| (i.device_type, format!("{} ({:?})", i.name, i.backend))).collect()
    })
}

/// Silences file descriptor 2 while it lives. On a headless machine (no `XDG_RUNTIME_DIR`)
/// the Vulkan loader's window-system code prints "error: XDG_RUNTIME_DIR is invalid" while
/// adapters are enumerated, on every run, although nothing failed; the probe's own outcome
/// is reported through `Error`s as usual.
#[cfg(feature = "wgpu")]
struct QuietStderr(Option<i32>);

#[cfg(feature = "wgpu")]
impl QuietStderr {
    fn on_headless() -> Self {
        #[cfg(unix)]
        if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
            // SAFETY: plain descriptor calls; every descriptor opened here is closed or
            // restored in `drop`.
            unsafe {
                let saved = libc::dup(2);
                let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if saved >= 0 && null >= 0 && libc::dup2(null, 2) >= 0 {
                    libc::close(null);
                    return Self(Some(saved));
                }
                for fd in [saved, null] {
                    if fd >= 0 {
                        libc::close(fd);
                    }
                }
            }
        }
        Self(None)
    }
}

#[cfg(feature = "wgpu")]
impl Drop for QuietStderr {
    fn drop(&mut self) {
        #[cfg(unix)]
        if let Some(saved) = self.0 {
            // SAFETY: `saved` is the descriptor duplicated in `on_headless`.
            unsafe {
                libc::dup2(saved, 2);
                libc::close(saved);
            }
        }
    }
}

/// The first hardware GPU wgpu offers (discrete, then integrated, virtual, other).
#[cfg(feature = "wgpu")]
fn wgpu_gpu() -> Option<Selected> {
    use burn::tensor::DeviceKind;
    use wgpu::DeviceType as T;
    let found = adapters();
    type Kind = fn(usize) -> DeviceKind;
    let kinds: [(T, Kind); 3] = [(T::DiscreteGpu, DeviceKind::DiscreteGpu), (T::IntegratedGpu, DeviceKind::IntegratedGpu), (T::VirtualGpu, DeviceKind::VirtualGpu)];
    kinds.into_iter().find_map(|(t, kind)| {
        let (_, name) = found.iter().find(|(d, _)| *d == t)?;
        Some(Selected { name: format!("wgpu: {name}"), device: Device::wgpu(kind(0)) })
    })
}

#[cfg(feature = "wgpu")]
fn wgpu_adapter(software_only: bool) -> Result<Selected> {
    if !software_only && let Some(gpu) = wgpu_gpu() {
        return Ok(gpu);
    }
    match adapters().iter().find(|(d, _)| *d == wgpu::DeviceType::Cpu) {
        Some((_, name)) => Ok(Selected { name: format!("wgpu: {name}"), device: Device::wgpu(burn::tensor::DeviceKind::Cpu) }),
        None => Err(Error::Unsupported("no wgpu adapter found: no GPU driver and no software Vulkan device (on Debian/Ubuntu: apt install mesa-vulkan-drivers)".into())),
    }
}

static DEFAULT: OnceLock<Selected> = OnceLock::new();

/// Makes `selected` the process-wide default (a binary's `--backend`), before anything has
/// used the default; afterwards the default stays what it was and this says so.
pub fn set_default(selected: Selected) -> Result<()> {
    let name = selected.name.clone();
    DEFAULT.set(selected).map_err(|_| Error::Unsupported(format!("backend {name}: the default device is already in use")))
}

/// The process-wide default (`NCODEC_DEVICE`, else the CPU): what the library uses when no
/// device is passed explicitly. An unusable `NCODEC_DEVICE` falls back to the CPU with a warning.
pub fn default() -> &'static Selected {
    DEFAULT.get_or_init(|| match Backend::from_env().and_then(Backend::select) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("warning: NCODEC_DEVICE: {e}; using the CPU");
            cpu().expect("a CPU backend is compiled in")
        }
    })
}

/// Name of the default device, for logs and cards.
pub fn name() -> &'static str {
    &default().name
}

/// The default device.
pub fn device() -> Device {
    default().device.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_aliases_parse() {
        let names = [
            ("auto", Backend::Auto),
            ("cpu", Backend::Cpu),
            ("flex", Backend::Cpu),
            ("wgpu-cpu", Backend::WgpuCpu),
            ("lavapipe", Backend::WgpuCpu),
            ("vulkan", Backend::Vulkan),
            ("tch", Backend::Tch),
            ("libtorch", Backend::Tch),
            ("tch-cuda", Backend::TchCuda),
        ];
        for (name, want) in names {
            assert_eq!(name.parse::<Backend>().unwrap(), want, "{name}");
        }
        let unknown = "tpu".parse::<Backend>().unwrap_err().to_string();
        assert!(unknown.contains("'tpu'") && unknown.contains("tch-cuda"), "{unknown}");
    }

    /// A route this build lacks is refused with the cargo feature that brings it, not a panic.
    #[test]
    fn a_route_not_built_names_its_feature() {
        #[cfg(not(feature = "tch"))]
        for route in [Backend::Tch, Backend::TchCuda] {
            let err = route.select().unwrap_err().to_string();
            assert!(err.contains("cargo feature `tch`"), "{err}");
        }
        #[cfg(not(feature = "cuda"))]
        assert!(Backend::Cuda.select().unwrap_err().to_string().contains("cargo feature `cuda`"));
        assert_eq!(Backend::Cpu.select().unwrap().name, "flex");
    }
}

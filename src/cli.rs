//! What the three binaries share: turning a result into a message and an exit status.

use std::process::ExitCode;

/// Success → 0; any error → one `tool: error: …` line on stderr and exit status 1.
pub fn finish(tool: &str, result: crate::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{tool}: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Options every binary that runs a network shares.
#[derive(clap::Args, Debug, Clone)]
pub struct BackendArgs {
    /// Where the transforms run: auto (a GPU if there is one, else the CPU), cpu, wgpu (a GPU,
    /// else Mesa's software Vulkan), wgpu-cpu, cuda, ndarray. Streams decode identically
    /// whatever backend made them.
    #[arg(long, env = "NCODEC_DEVICE", default_value = "auto", value_parser = parse_backend)]
    pub backend: crate::backend::Backend,
}

/// clap value parser for backend names (see [`crate::backend::Backend`]).
pub fn parse_backend(s: &str) -> Result<crate::backend::Backend, String> {
    s.parse().map_err(|e: crate::Error| e.to_string())
}

impl BackendArgs {
    pub fn select(&self) -> crate::Result<crate::backend::Selected> {
        self.backend.select()
    }
}

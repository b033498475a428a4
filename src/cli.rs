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

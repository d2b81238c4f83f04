//! The `cedargate` binary: CLI subcommands and the Lambda handler.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cedargate::cli::main()
}

//! The `cedargate` binary: CLI subcommands and the Lambda handler.

fn main() -> std::process::ExitCode {
    cedargate::cli::main()
}

fn main() -> std::process::ExitCode {
    gastown::cli::daemon::main(std::env::args_os().collect())
}

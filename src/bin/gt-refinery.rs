fn main() -> std::process::ExitCode {
    gastown::cli::refinery::main(std::env::args_os().collect())
}

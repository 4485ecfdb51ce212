fn main() -> std::process::ExitCode {
    gastown::cli::queue::main(std::env::args_os().collect())
}

fn main() -> std::process::ExitCode {
    gastown::cli::witness::main(std::env::args_os().collect())
}

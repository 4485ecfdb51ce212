fn main() -> std::process::ExitCode {
    gastown::cli::gt::main(std::env::args_os().collect())
}

fn main() -> std::process::ExitCode {
    gastown::cli::land::main(std::env::args_os().collect())
}

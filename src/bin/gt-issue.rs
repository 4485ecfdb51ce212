fn main() -> std::process::ExitCode {
    gastown::cli::issue::main(std::env::args_os().collect())
}

fn main() -> std::process::ExitCode {
    gastown::cli::mail::main(std::env::args_os().collect())
}

fn main() {
    std::process::exit(gastown::cli::mail::main(std::env::args_os().collect()))
}

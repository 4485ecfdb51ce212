fn main() {
    std::process::exit(gastown::cli::daemon::main(std::env::args_os().collect()))
}

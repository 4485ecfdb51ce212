fn main() {
    std::process::exit(gastown::cli::daemon::main())
}

fn main() {
    std::process::exit(gastown::cli::issue::main())
}

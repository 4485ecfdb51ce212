fn main() {
    std::process::exit(gastown::cli::witness::main())
}

fn main() {
    std::process::exit(gastown::cli::gt::main())
}

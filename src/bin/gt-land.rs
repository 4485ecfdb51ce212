fn main() {
    std::process::exit(gastown::cli::land::main())
}

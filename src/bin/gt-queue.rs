fn main() {
    std::process::exit(gastown::cli::queue::main())
}

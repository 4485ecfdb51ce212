fn main() {
    std::process::exit(gastown::cli::refinery::main())
}

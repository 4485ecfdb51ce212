fn main() {
    std::process::exit(gastown::cli::mail::main())
}

fn main() {
    std::process::exit(gastown::cli::gt::main(std::env::args_os().collect()))
}

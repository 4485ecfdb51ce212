fn main() {
    std::process::exit(gastown::cli::witness::main(std::env::args_os().collect()))
}

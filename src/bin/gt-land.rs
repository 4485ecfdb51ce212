fn main() {
    std::process::exit(gastown::cli::land::main(std::env::args_os().collect()))
}

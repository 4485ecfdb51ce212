fn main() {
    std::process::exit(gastown::cli::queue::main(std::env::args_os().collect()))
}

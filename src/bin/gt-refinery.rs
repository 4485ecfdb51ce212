fn main() {
    std::process::exit(gastown::cli::refinery::main(std::env::args_os().collect()))
}

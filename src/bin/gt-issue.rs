fn main() {
    std::process::exit(gastown::cli::issue::main(std::env::args_os().collect()))
}

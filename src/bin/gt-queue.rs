#![cfg_attr(not(test), no_main)]
gastown::main!(gastown::cli::queue::main);

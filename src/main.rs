fn main() -> std::process::ExitCode {
    streamctl::cli::main()
}

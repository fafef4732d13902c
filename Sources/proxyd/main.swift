// Thin entry point: everything runs in ProxyCommand (nonisolated), never in main-actor top-level code.
ProxyCommand.main(KubectlArguments.normalize(Array(CommandLine.arguments.dropFirst())))

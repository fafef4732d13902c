/// The "container" behind the stand-in's exec and attach: a handful of fake commands, enough to drive kubectl's
/// streams. `echo ARGS…` (stdout), `cat` (stdin to stdout until stdin closes), `hostname` (the pod name), `true`,
/// `false`, `sh -c SCRIPT` where SCRIPT is `;`-separated `echo WORDS [>&2]`, `true`, `false` and `exit N`, and any
/// other command fails with exit code 127 ("not found" on stderr). Attach runs `cat`.
/// Confined to one event loop.
final class FakeProcess {
    enum Output { case stdout, stderr }

    private let command: [String]
    private let pod: String
    private let hasStdin: Bool
    private let output: (Output, [UInt8]) -> Void
    private let exited: (Int) -> Void
    private var running = false
    private var copyingStdin = false

    init(command: [String], pod: String, hasStdin: Bool, output: @escaping (Output, [UInt8]) -> Void,
         exited: @escaping (Int) -> Void) {
        self.command = command
        self.pod = pod
        self.hasStdin = hasStdin
        self.output = output
        self.exited = exited
    }

    func start() {
        guard !running else { return }
        running = true
        guard let name = command.first else {
            exit(126, stderr: "standin: no command given\n")
            return
        }
        let args = Array(command.dropFirst())
        switch name {
        case "echo":
            output(.stdout, Array((args.joined(separator: " ") + "\n").utf8))
            exit(0)
        case "cat" where args.isEmpty:
            if hasStdin { copyingStdin = true } else { exit(0) }
        case "hostname":
            output(.stdout, Array((pod + "\n").utf8))
            exit(0)
        case "true":
            exit(0)
        case "false":
            exit(1)
        case "sh" where args.count == 2 && args[0] == "-c":
            exit(runScript(args[1]))
        default:
            exit(127, stderr: "standin: \(name): command not found\n")
        }
    }

    func stdin(_ bytes: [UInt8]) {
        if copyingStdin, !bytes.isEmpty { output(.stdout, bytes) }
    }

    func stdinClosed() {
        if copyingStdin {
            copyingStdin = false
            exit(0)
        }
    }

    private func exit(_ code: Int, stderr: String? = nil) {
        if let stderr { output(.stderr, Array(stderr.utf8)) }
        exited(code)
    }

    private func runScript(_ script: String) -> Int {
        var status = 0
        for statement in script.split(whereSeparator: { $0 == ";" || $0 == "\n" }) {
            var words = statement.split(separator: " ").map(String.init)
            guard let verb = words.first else { continue }
            switch verb {
            case "exit":
                return words.count > 1 ? (Int(words[1]) ?? 2) & 0xff : status
            case "true":
                status = 0
            case "false":
                status = 1
            case "echo":
                var stream = Output.stdout
                if words.last == ">&2" || words.last == "1>&2" {
                    stream = .stderr
                    words.removeLast()
                }
                output(stream, Array((words.dropFirst().joined(separator: " ") + "\n").utf8))
                status = 0
            default:
                output(.stderr, Array("sh: \(verb): not found\n".utf8))
                status = 127
            }
        }
        return status
    }

    /// The v1 `Status` written to the error channel when the command ends, as kubelet writes it.
    static func status(exitCode: Int, command: [String]) -> String {
        if exitCode == 0 {
            return JSON.obj(["metadata": .obj([:]), "status": .string("Success")]).serialized
        }
        let message = "command terminated with non-zero exit code: error executing command \(command), exit code \(exitCode)"
        return JSON.obj([
            "metadata": .obj([:]),
            "status": .string("Failure"),
            "message": .string(message),
            "reason": .string("NonZeroExitCode"),
            "details": .obj([
                "causes": .array([.obj(["reason": .string("ExitCode"), "message": .string(String(exitCode))])])
            ]),
        ]).serialized
    }
}

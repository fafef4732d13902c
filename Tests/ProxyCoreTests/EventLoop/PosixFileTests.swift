import Foundation
import Glibc
import Testing
@testable import ProxyCore

@Suite("Posix files and CPUs")
struct PosixFileTests {
    private func temporaryDirectory() throws -> String {
        let dir = NSTemporaryDirectory() + "posix-file-tests-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    @Test func readsAWholeFileByteForByte() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let bytes = (0..<70_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        try Data(bytes).write(to: URL(fileURLWithPath: dir + "/f"))
        #expect(try Posix.readFile(atPath: dir + "/f") == bytes)
        #expect(FileManager.default.createFile(atPath: dir + "/empty", contents: Data()))
        #expect(try Posix.readFile(atPath: dir + "/empty") == [])
    }

    @Test func readsProcFilesWhoseStatSizeIsZero() throws {
        let status = try Posix.readFile(atPath: "/proc/self/status")
        #expect(String(decoding: status, as: UTF8.self).contains("Cpus_allowed:"))
    }

    @Test func reportsTheOSReason() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(throws: IOError(errno: ENOENT, function: "open")) { try Posix.readFile(atPath: dir + "/missing") }
        #expect(throws: IOError(errno: EISDIR, function: "read")) { try Posix.readFile(atPath: dir) }
        guard case .failure(let failure) = ConfigFiles.read(dir + "/missing") else {
            Issue.record("a missing file was read")
            return
        }
        #expect(failure.reason == "No such file or directory")
    }

    @Test func currentDirectoryIsGetcwd() {
        #expect(Posix.currentDirectory() == FileManager.default.currentDirectoryPath)
    }

    @Test func countsTheAffinityMask() {
        func count(_ text: String) -> Int? { Posix.allowedCPUCount(procStatus: Array(text.utf8)) }
        #expect(count("Name:\tproxyd\nCpus_allowed:\t3\nCpus_allowed_list:\t0-1\n") == 2)
        #expect(count("Cpus_allowed:\t1\n") == 1)
        #expect(count("Cpus_allowed:\tff,ffffffff\n") == 40)
        #expect(count("Cpus_allowed:\t00000000,00000010\n") == 1)
        #expect(count("Cpus_allowed:\tzz\n") == nil)
        #expect(count("Name:\tproxyd\n") == nil)
    }

    @Test func processorCountFollowsThisProcessAffinity() throws {
        let status = try Posix.readFile(atPath: "/proc/self/status")
        let expected = try #require(Posix.allowedCPUCount(procStatus: status))
        #expect(expected >= 1)
        #expect(Posix.availableProcessorCount() == expected)
        #expect(ProxyConfiguration.defaultLoopCount == expected)
    }
}

@Suite("Open file limit")
struct OpenFileLimitTests {
    @Test func softLimitIsRaisedToTheHardLimit() {
        let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
        var original = rlimit()
        #expect(getrlimit(resource, &original) == 0)
        defer { _ = setrlimit(resource, &original) }
        guard original.rlim_max > 256 else { return }
        var lowered = original
        lowered.rlim_cur = 256
        #expect(setrlimit(resource, &lowered) == 0)
        let (before, after, error) = OpenFileLimit.raiseSoftToHard()
        #expect(error == nil)
        #expect(before.soft == 256)
        var now = rlimit()
        #expect(getrlimit(resource, &now) == 0)
        #expect(after.soft == UInt64(now.rlim_cur))
        if original.rlim_max != rlim_t.max {
            #expect(now.rlim_cur == original.rlim_max)
        } else {
            #expect(now.rlim_cur > 256)
        }
    }
}

import Foundation

/// A minimal lock-protected box. NIOConcurrencyHelpers is not a declared dependency of this target, so this uses
/// Foundation's `NSLock`, which exists on every platform the package builds on.
final class Locked<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value

    init(_ value: Value) {
        self.value = value
    }

    func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        self.lock.lock()
        defer { self.lock.unlock() }
        return try body(&self.value)
    }
}

import Foundation

/// Counts the nominal floating-point operations of the heavy ops (matrix products,
/// convolutions counted as direct convolutions, attention), for GFLOP/s figures in benchmarks.
/// Counting is off unless `measure` is running.
public enum FLOPCounter {
    nonisolated(unsafe) private static var total: Double = 0
    nonisolated(unsafe) private static var enabled = false
    private static let lock = NSLock()

    @inline(__always)
    static func add(_ flops: Double) {
        guard enabled else { return }
        lock.lock()
        total += flops
        lock.unlock()
    }

    /// Runs `body` and returns its result with the operations it performed.
    public static func measure<R>(_ body: () throws -> R) rethrows -> (R, flops: Double) {
        lock.lock()
        total = 0
        enabled = true
        lock.unlock()
        defer {
            lock.lock()
            enabled = false
            lock.unlock()
        }
        let result = try body()
        lock.lock()
        let flops = total
        lock.unlock()
        return (result, flops)
    }
}

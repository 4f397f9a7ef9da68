import Synchronization

/// Counts the nominal floating-point operations of the heavy ops (matrix products,
/// convolutions counted as direct convolutions, attention), for GFLOP/s figures in benchmarks.
/// Counting is off unless `measure` is running. Process-wide on purpose: a benchmark measures one
/// computation at a time, and the ops count from whichever thread runs them.
public enum FLOPCounter {
    private static let enabled = Atomic<Bool>(false)
    private static let total = Mutex<Double>(0)

    @inline(__always)
    static func add(_ flops: Double) {
        guard enabled.load(ordering: .relaxed) else { return }
        total.withLock { $0 += flops }
    }

    /// Runs `body` and returns its result with the operations it performed.
    public static func measure<R>(_ body: () throws -> R) rethrows -> (R, flops: Double) {
        total.withLock { $0 = 0 }
        enabled.store(true, ordering: .relaxed)
        defer { enabled.store(false, ordering: .relaxed) }
        let result = try body()
        return (result, total.withLock { $0 })
    }
}

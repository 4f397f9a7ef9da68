import COpenBLAS
import Dispatch
import Foundation

/// Parallel loops: ours (norms, activations, convolution transforms, attention) and the
/// blocks of large GEMMs (`BLAS.sgemm`).
///
/// There is one pool of threads (Dispatch's); a loop uses `ComputeSettings.current.threads` of
/// them and runs each with the caller's settings. OpenBLAS is kept single-threaded, so its own
/// pool never spins against ours.
public enum Parallel {
    /// Sets OpenBLAS to one thread, once per process (before its first product).
    private static let openBLASSingleThreaded: Void = openblas_set_num_threads(1)
    static func keepOpenBLASSingleThreaded() { _ = openBLASSingleThreaded }

    /// The number of threads used by parallel loops and parallel GEMMs.
    public static var threadCount: Int { ComputeSettings.current.threads }

    /// Calls `body` on disjoint, contiguous sub-ranges that together cover `0..<count`,
    /// one per thread. Runs inline when the work is smaller than `minimumPerThread` per thread.
    @inlinable
    public static func forRanges(_ count: Int, minimumPerThread: Int = 1, _ body: (Range<Int>) -> Void) {
        guard count > 0 else { return }
        let settings = ComputeSettings.current
        let threads = Swift.min(settings.threads, Swift.max(1, count / Swift.max(1, minimumPerThread)))
        if threads <= 1 {
            body(0..<count)
            return
        }
        let chunk = (count + threads - 1) / threads
        withoutActuallyEscaping(body) { body in
            // Each thread gets its own range; that the ranges are disjoint is what makes this safe,
            // which the compiler cannot see in the closures (they write through pointers).
            let shared = SharedBody(body: body)
            DispatchQueue.concurrentPerform(iterations: threads) { t in
                let start = t * chunk
                let end = Swift.min(count, start + chunk)
                if start < end { settings.run { shared.body(start..<end) } }
            }
        }
    }

    /// A loop body shared by the threads of one `forRanges` call. `@unchecked Sendable`: each thread
    /// calls it on its own range, and the ranges are disjoint.
    @usableFromInline
    struct SharedBody: @unchecked Sendable {
        @usableFromInline let body: (Range<Int>) -> Void
        @usableFromInline init(body: @escaping (Range<Int>) -> Void) { self.body = body }
    }

    /// Calls `body(i)` for every `i` in `0..<count`, spread over the threads.
    @inlinable
    public static func forEach(_ count: Int, minimumPerThread: Int = 1, _ body: (Int) -> Void) {
        forRanges(count, minimumPerThread: minimumPerThread) { range in
            for i in range { body(i) }
        }
    }
}

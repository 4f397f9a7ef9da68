import CKernels
import Dispatch

/// The machine's physical limit for float32 multiply-adds: every thread of the pool runs
/// multiply-adds held in registers (no memory traffic), as wide as the CPU's vectors allow.
/// Benchmarks report their rates as a fraction of it.
public enum PeakRate {
    /// GFLOP/s over all threads (the best of `repeats` runs of about `seconds` each).
    public static func measure(seconds: Double = 0.2, repeats: Int = 3) -> Double {
        let threads = Parallel.threadCount
        // Calibrate the rounds per thread to take about `seconds`.
        var sink = [Float](repeating: 0, count: 16)
        var rounds = 1 << 16
        while true {
            let start = DispatchTime.now().uptimeNanoseconds
            sdf_fma_peak(rounds, &sink)
            let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            if elapsed > seconds / 4 || rounds > 1 << 34 { rounds = Int(Double(rounds) * seconds / max(elapsed, 1e-9)); break }
            rounds *= 4
        }
        var best = 0.0
        for _ in 0..<max(repeats, 1) {
            let start = DispatchTime.now().uptimeNanoseconds
            Parallel.forEach(threads) { _ in
                var local = [Float](repeating: 0, count: 16)
                sdf_fma_peak(rounds, &local)
            }
            let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            best = max(best, Double(threads) * Double(rounds) * 384 / elapsed / 1e9)
        }
        return best
    }
}

import ArgumentParser
import Foundation
import TensorCore

/// `sdflow bench`: speed measurements (build with `-c release`).
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure speed (use a release build).",
        subcommands: [Ops.self, BenchModel.self, BenchTiles.self]
    )

    /// `sdflow bench ops`: the core kernels next to plain sgemm of the same sizes.
    struct Ops: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Conv2d 3x3 and 4096-token attention in GFLOP/s next to plain sgemm.")

        @Option(help: "Threads for OpenBLAS and parallel loops.")
        var threads: Int?

        @Option(help: "Repetitions per measurement (the best is reported).")
        var repeats = 3

        func run() throws {
            let settings = Engine.withMeasuredKernels(try Engine.computeSettings(threads: threads), quiet: true)
            settings.run {
                print("threads: \(settings.threads), OpenBLAS kernels: \(BLAS.openBLASCore), float32 GEMM: \(settings.float32Kernel.rawValue)")
                print("  chosen by: \(settings.kernelReason)")
                let peak = PeakRate.measure()
                print(String(format: "peak FMA rate (registers only, all threads): %.1f GFLOP/s", peak))
                OpsBenchmark(repeats: repeats, peak: peak).run()
            }
        }
    }
}

/// Micro-benchmarks of TensorCore kernels.
struct OpsBenchmark {
    let repeats: Int
    /// The machine's peak FMA rate in GFLOP/s; each row shows its share.
    let peak: Double

    func run() {
        // conv2d 3x3, 320 -> 320 channels, 64x64, batch 2 (the UNet's largest 3x3 convs)
        let x = random([2, 320, 64, 64]), w = random([320, 320, 3, 3]), b = random([320])
        let convFlop = 2.0 * 2 * 320 * 64 * 64 * 320 * 9
        let conv = best { _ = x.conv2d(weight: w, bias: b, stride: 1, padding: .uniform(1)) }
        // The same GEMM as the convolution, without the unfolding: (320, 2880) x (2880, 4096), twice.
        let a = random([320, 2880]), bm = random([2880, 4096])
        var c = Tensor(zeros: [320, 4096])
        func gemmTwice() {
            for _ in 0..<2 {
                BLAS.sgemm(m: 320, n: 4096, k: 2880, a: a.pointer, lda: 2880, b: bm.pointer, ldb: 4096,
                           c: c.mutablePointer(), ldc: 4096)
            }
        }
        let gemm = best(gemmTwice)
        report("conv2d 3x3 320->320 64x64 b2", seconds: conv, flop: convFlop)
        report("sgemm (320x2880)x(2880x4096) x2", seconds: gemm, flop: convFlop)
        print(String(format: "conv2d / sgemm rate: %.0f%%", 100 * gemm / conv))
        if GEMMPrecision.bfloat16InHardware {
            var fast = ComputeSettings.current
            fast.precision = .bfloat16
            let (bf16, fastConv) = fast.run {
                (best(gemmTwice), best { _ = x.conv2d(weight: w, bias: b, stride: 1, padding: .uniform(1), mode: .fast) })
            }
            report("bf16 gemm, same sizes", seconds: bf16, flop: convFlop)
            report("conv2d F(4,3) + bf16 gemm", seconds: fastConv, flop: convFlop)
        }

        // Self-attention over 4096 tokens, 8 heads of 40 (320 channels), batch 1
        let q = random([1, 4096, 320]), k = random([1, 4096, 320]), v = random([1, 4096, 320])
        let attentionFlop = 2.0 * 2 * 4096 * 4096 * 320
        let attention = best { _ = Tensor.attention(query: q, key: k, value: v, heads: 8) }
        let qh = random([4096, 40]), kh = random([4096, 40])
        var scores = Tensor(zeros: [4096, 4096])
        let scoreGemm = best {
            for _ in 0..<8 {
                BLAS.sgemm(transposeB: true, m: 4096, n: 4096, k: 40, a: qh.pointer, lda: 40, b: kh.pointer, ldb: 40,
                           c: scores.mutablePointer(), ldc: 4096)
                BLAS.sgemm(m: 4096, n: 40, k: 4096, a: scores.pointer, lda: 4096, b: kh.pointer, ldb: 40,
                           c: UnsafeMutablePointer(mutating: qh.pointer), ldc: 40)
            }
        }
        report("attention 4096 tokens 8x40 heads", seconds: attention, flop: attentionFlop)
        report("sgemm QK^T + PV, 8 heads, unfused", seconds: scoreGemm, flop: attentionFlop)
        print(String(format: "attention / sgemm rate: %.0f%%", 100 * scoreGemm / attention))
        let shapes = KernelTuning.shapeChoices
        if !shapes.isEmpty {
            print("kernels chosen per shape on this machine (measured on first use):")
            for (key, choice) in shapes.sorted(by: { $0.key < $1.key }) { print("  \(key): \(choice.summary)") }
        }
    }

    private func random(_ shape: [Int]) -> Tensor {
        var g = SystemRandomNumberGenerator()
        return Tensor(shape: shape, values: (0..<shape.reduce(1, *)).map { _ in Float.random(in: -1...1, using: &g) })
    }

    private func best(_ body: () -> Void) -> Double {
        body()  // warm-up
        var best = Double.infinity
        for _ in 0..<repeats {
            let start = DispatchTime.now().uptimeNanoseconds
            body()
            best = min(best, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        }
        return best
    }

    private func report(_ label: String, seconds: Double, flop: Double) {
        let rate = flop / seconds / 1e9
        print(String(format: "%-36@ %8.2f ms %8.1f GFLOP/s %5.0f%% of peak", label as NSString, seconds * 1000, rate, 100 * rate / peak))
    }
}

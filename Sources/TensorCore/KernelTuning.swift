import CKernels
import Foundation

/// Kernel choices made by timing the candidates on this machine, kept the way FFTW keeps its
/// "wisdom": measured once per machine (CPU model, thread count, OpenBLAS kernels, build) and
/// saved as JSON, so later runs start with the faster kernels without measuring again.
///
/// Today's choice is the float32 GEMM: OpenBLAS's or ours (AVX-512 FMA), which only differ on
/// CPUs with AVX-512; which one is faster depends on the CPU and the OpenBLAS build (ours on a
/// Zen 4 with OpenBLAS pinned to AVX2 kernels, OpenBLAS's SkylakeX kernels on some Xeons).
/// Both compute exact float32 products, so either stays within the exact mode's bounds.
public enum KernelTuning {
    /// A decision and the measurements behind it.
    public struct Choice: Codable, Sendable, Equatable {
        /// The machine it was measured on (`KernelTuning.machine`).
        public var machine: String
        /// The float32 GEMM chosen (`Float32Kernel` raw value).
        public var float32Kernel: String
        /// Seconds per candidate for the shapes below (best of the repeats).
        public var seconds: [String: Double]

        public init(machine: String, float32Kernel: String, seconds: [String: Double]) {
            self.machine = machine
            self.float32Kernel = float32Kernel
            self.seconds = seconds
        }

        /// "avx512 (measured: openblas 12.1 ms, avx512 9.8 ms)".
        public var summary: String {
            let times = seconds.sorted { $0.key < $1.key }.map { "\($0.key) \(String(format: "%.1f", $0.value * 1000)) ms" }
            return times.isEmpty ? "\(float32Kernel) (the only candidate on this CPU)" : "\(float32Kernel) (measured: \(times.joined(separator: ", ")))"
        }
    }

    /// The products timed: those of an SD 1.x UNet at 512x512 (channels 320, 640, 1280; batch 2
    /// for classifier-free guidance), with fewer rows and columns so that measuring takes tens of
    /// milliseconds: Winograd tile products (channels x tiles x channels) and attention projections
    /// (tokens x channels x channels).
    public static let shapes: [(m: Int, n: Int, k: Int)] = [
        (320, 1024, 320), (640, 256, 640), (1280, 64, 1280),  // 3x3 convolutions, per Winograd tile position
        (1024, 320, 320), (512, 640, 640), (1024, 1280, 320), // projections and the feed-forward layer
    ]

    /// What a choice depends on: the CPU model, the thread count, OpenBLAS's kernels and this build.
    public static var machine: String {
        #if DEBUG
        let build = "debug"
        #else
        let build = "release"
        #endif
        return "\(cpuModel); \(Parallel.threadCount) threads; OpenBLAS \(BLAS.openBLASCore); \(String(cString: sdf_kernel_set())); \(build)"
    }

    /// The CPU's model name from /proc/cpuinfo ("unknown CPU" elsewhere), read once.
    static let cpuModel: String = {
        let info = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let line = info.split(separator: "\n").first { $0.hasPrefix("model name") }
        return line.flatMap { $0.split(separator: ":", maxSplits: 1).last }.map { $0.trimmingCharacters(in: .whitespaces) } ?? "unknown CPU"
    }()

    /// The candidates on this CPU.
    static var candidates: [Float32Kernel] { sdf_gemm_f32_available() != 0 ? [.openBLAS, .avx512] : [.openBLAS] }

    /// Times every candidate on `shapes` (best of `repeats`) and picks the fastest.
    public static func measure(repeats: Int = 3) -> Choice {
        let kernels = candidates
        guard kernels.count > 1 else { return Choice(machine: machine, float32Kernel: Float32Kernel.openBLAS.rawValue, seconds: [:]) }
        let operands = shapes.map { shape in
            (a: Tensor.randomForTuning(shape.m * shape.k), b: Tensor.randomForTuning(shape.k * shape.n),
             c: UnsafeMutablePointer<Float>.allocate(capacity: shape.m * shape.n))
        }
        defer { operands.forEach { $0.c.deallocate() } }
        var seconds: [String: Double] = [:]
        // Alternate the candidates, so that a slow moment of the machine does not favour one.
        for _ in 0..<repeats {
            for kernel in kernels {
                let start = DispatchTime.now().uptimeNanoseconds
                for (shape, operand) in zip(shapes, operands) {
                    BLAS.sgemm(m: shape.m, n: shape.n, k: shape.k, a: operand.a.pointer, lda: shape.k, b: operand.b.pointer, ldb: shape.n,
                               c: operand.c, ldc: shape.n, kernel: kernel)
                }
                let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
                seconds[kernel.rawValue] = Swift.min(seconds[kernel.rawValue] ?? .infinity, elapsed)
            }
        }
        let fastest = kernels.min { seconds[$0.rawValue]! < seconds[$1.rawValue]! }!
        return Choice(machine: machine, float32Kernel: fastest.rawValue, seconds: seconds)
    }

    /// The choices kept in `file`, by machine (empty when there is no readable file).
    static func keptChoices(file: String) -> [String: Choice] {
        guard let data = FileManager.default.contents(atPath: file) else { return [:] }
        return (try? JSONDecoder().decode([String: Choice].self, from: data)) ?? [:]
    }

    /// The choice kept in `file` for this machine, if there is one (nothing is measured).
    public static func kept(file: String) -> Choice? {
        guard let kept = keptChoices(file: file)[machine], kept.machine == machine,
              candidates.map(\.rawValue).contains(kept.float32Kernel) else { return nil }
        return kept
    }

    /// The choice kept in `file` for this machine; otherwise (no file, none for this machine, an
    /// unreadable file, or `remeasure`) one measured now and saved there next to the choices of
    /// other machines (a debug build, another thread count). A file that cannot be written only
    /// costs measuring again next time.
    public static func choice(file: String, remeasure: Bool = false, repeats: Int = 3) -> (choice: Choice, measuredNow: Bool) {
        if !remeasure, let kept = kept(file: file) { return (kept, false) }
        let measured = measure(repeats: repeats)
        var choices = keptChoices(file: file)
        choices[measured.machine] = measured
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        if let data = try? encoder.encode(choices) {
            try? FileManager.default.createDirectory(atPath: (file as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try? AtomicFile.write(data, to: file)
        }
        return (measured, true)
    }

    /// Why the float32 GEMM in use was chosen (`bench ops` prints it).
    nonisolated(unsafe) public private(set) static var reason = "default (not measured)"

    /// Uses a choice, unless `SDFLOW_SGEMM` chose the kernel.
    public static func apply(_ choice: Choice, from file: String) {
        if let explicit = ProcessInfo.processInfo.environment["SDFLOW_SGEMM"], !explicit.isEmpty {
            reason = "SDFLOW_SGEMM=\(explicit)"
            return
        }
        guard let kernel = Float32Kernel(rawValue: choice.float32Kernel) else { return }
        BLAS.float32Kernel = kernel
        reason = "\(choice.summary), kept in \(file)"
    }
}

extension Tensor {
    /// Deterministic values in [-1, 1) for timing (the same every run).
    fileprivate static func randomForTuning(_ count: Int) -> Tensor {
        var state: UInt32 = 12345
        return Tensor(shape: [count], values: (0..<count).map { _ in
            state = state &* 1_664_525 &+ 1_013_904_223
            return Float(state >> 8) / Float(1 << 23) - 1
        })
    }
}

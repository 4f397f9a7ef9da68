import CKernels
import Foundation
import Synchronization

/// A kernel that `KernelTuning.tuned` can choose for a shape; its raw value is its name in `kernels.json`.
public protocol TuningCandidate: RawRepresentable<String>, Hashable, Sendable {}

/// Kernel choices made by timing the candidates on this machine, kept the way FFTW keeps its
/// "wisdom": measured once per machine (CPU model, thread count, OpenBLAS kernels, build) and
/// saved as JSON, so later runs start with the faster kernels without measuring again.
///
/// Two kinds of choices: the float32 GEMM (OpenBLAS's or ours with AVX-512 FMA, timed on an SD
/// 1.x UNet's matrix products when a model workflow first runs, and apart on small products such
/// as narrow Winograd convolutions'), and per shape the way a layer is
/// computed (3x3 convolutions: im2col + GEMM or Winograd; attention: the query block size), timed
/// on the shapes the loaded model really has the first time each one runs (`tuned`). Every
/// candidate of the exact mode computes float32 results within its bounds against diffusers; the
/// fast mode's candidates are at most as far off as its documented Winograd F(4x4,3x3) and bfloat16.
public enum KernelTuning {
    /// A decision and the measurements behind it.
    public struct Choice: Codable, Sendable, Equatable {
        /// The machine it was measured on (`KernelTuning.machine`).
        public var machine: String
        /// The float32 GEMM chosen.
        public var float32Kernel: GemmKernel
        /// Seconds per candidate (best of the repeats): each `GemmKernel` and the fast mode's
        /// bfloat16 GEMM on `shapes`, and each kernel on `smallShapes` (`timingKey`).
        public var seconds: [String: Double]
        /// The per-shape choices, by shape key (`tuned`); missing in files from before them.
        public var shapes: [String: ShapeChoice]?

        public init(machine: String, float32Kernel: GemmKernel, seconds: [String: Double], shapes: [String: ShapeChoice]? = nil) {
            self.machine = machine
            self.float32Kernel = float32Kernel
            self.seconds = seconds
            self.shapes = shapes
        }

        /// The name of a candidate's time in `seconds`: "openblas", "avx512 small", "bfloat16".
        public static func timingKey(_ kernel: GemmKernel, small: Bool = false) -> String { kernel.rawValue + (small ? " small" : "") }
        public static let bfloat16TimingKey = GEMMPrecision.bfloat16.rawValue

        /// The float32 GEMM for small products (`ComputeSettings.smallFloat32Kernel`): the candidate
        /// fastest on `smallShapes`, else `float32Kernel`.
        public var smallFloat32Kernel: GemmKernel {
            let small = GemmKernel.allCases.compactMap { kernel in seconds[Self.timingKey(kernel, small: true)].map { (kernel, $0) } }
            return small.min { $0.1 < $1.1 }?.0 ?? float32Kernel
        }

        /// Whether the fast mode's bfloat16 GEMM measured faster than the float32 one chosen (on
        /// Zen 4 and 5 vdpbf16ps doubles the multiply-add rate; on Xeons up to Emerald Rapids it
        /// does not, and converting the operands to bfloat16 makes it slower than float32).
        public var bfloat16Pays: Bool {
            guard let bf16 = seconds[Self.bfloat16TimingKey], let f32 = seconds[Self.timingKey(float32Kernel)] else { return false }
            return bf16 < f32
        }

        /// The GEMM precision of the fast mode on this machine.
        public var fastPrecision: GEMMPrecision { bfloat16Pays ? .bfloat16 : .float32 }

        /// "avx512 (measured: openblas 12.1 ms, avx512 9.8 ms)".
        public var summary: String {
            let times = seconds.sorted { $0.key < $1.key }.map { "\($0.key) \(String(format: "%.1f", $0.value * 1000)) ms" }
            guard !times.isEmpty else { return "\(float32Kernel.rawValue) (the only candidate on this CPU)" }
            let fast = seconds[Self.bfloat16TimingKey] == nil ? "" : bfloat16Pays ? "; --fast multiplies in bfloat16" : "; --fast keeps float32 GEMMs (bfloat16 measured slower)"
            return "\(float32Kernel.rawValue), small products \(smallFloat32Kernel.rawValue) (measured: \(times.joined(separator: ", ")))\(fast)"
        }
    }

    /// The kernel chosen for one shape of one layer kind, and the seconds each candidate took on
    /// it, by the candidates' names (`TuningCandidate`).
    public struct ShapeChoice: Codable, Sendable, Equatable {
        public var kernel: String
        public var seconds: [String: Double]

        /// The chosen kernel as a candidate of type `C`; nil when it names none (another revision's).
        public func kernel<C: TuningCandidate>(as type: C.Type) -> C? { C(rawValue: kernel) }

        public init(kernel: String, seconds: [String: Double]) {
            self.kernel = kernel
            self.seconds = seconds
        }

        /// "winograd (direct 97.7 ms, winograd 56.8 ms)".
        public var summary: String {
            "\(kernel) (" + seconds.sorted { $0.key < $1.key }.map { "\($0.key) \(String(format: "%.1f", $0.value * 1000)) ms" }
                .joined(separator: ", ") + ")"
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

    /// What a choice depends on: the CPU model, the thread count, OpenBLAS's kernels, the
    /// instruction-set cap, this build and the revision of the candidates (all of the current settings).
    public static var machine: String {
        #if DEBUG
        let build = "debug"
        #else
        let build = "release"
        #endif
        let settings = ComputeSettings.current
        let kernels = InstructionSet.capped(settings.isa) { String(cString: sdf_kernel_set()) }
        return "\(cpuModel); \(settings.threads) threads; OpenBLAS \(BLAS.openBLASCore); \(kernels); \(build)"
            + (settings.isa.map { "; capped at \($0.rawValue)" } ?? "") + "; kernels \(candidatesRevision)"
    }

    /// Raised whenever a candidate kernel changes (faster, or another algorithm behind a name), so
    /// that choices measured with the old ones are measured again instead of reused.
    /// 2: 3x3 convolutions with at most 4 outputs compute `direct` by direct multiply-adds; the
    /// GEMM for small products is chosen apart; close per-shape times are measured again.
    static let candidatesRevision = 2

    /// The CPU's model name from /proc/cpuinfo ("unknown CPU" elsewhere), read once.
    static let cpuModel: String = {
        let info = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let line = info.split(separator: "\n").first { $0.hasPrefix("model name") }
        return line.flatMap { $0.split(separator: ":", maxSplits: 1).last }.map { $0.trimmingCharacters(in: .whitespaces) } ?? "unknown CPU"
    }()

    /// Small products, timed apart (`ComputeSettings.smallFloat32Kernel`): a narrow Winograd convolution's
    /// product per tile position (output channels x tiles per chunk x input channels) for 64 and
    /// 128 channels, each repeated `smallRepeats` times.
    public static let smallShapes: [(m: Int, n: Int, k: Int)] = [(64, 64, 64), (128, 32, 128)]
    static let smallRepeats = 200

    /// Times every candidate on `shapes` (best of `repeats`) and picks the fastest; on CPUs with
    /// AVX-512 BF16 also times the fast mode's bfloat16 GEMM, which it uses only where that is
    /// faster than the float32 choice (`bfloat16Pays`). Runs with the current settings' threads and cap.
    public static func measure(repeats: Int = 3) -> Choice {
        let settings = ComputeSettings.current
        return settings.run { measureCandidates(repeats: repeats) }
    }

    private static func measureCandidates(repeats: Int) -> Choice {
        let candidates = GemmKernel.available
        let kernels: [(name: String, kernel: GemmKernel, precision: GEMMPrecision)] =
            candidates.map { (Choice.timingKey($0), $0, .float32) }
            + (GEMMPrecision.bfloat16InHardware ? [(Choice.bfloat16TimingKey, .openBLAS, .bfloat16)] : [])
        guard kernels.count > 1 else { return Choice(machine: machine, float32Kernel: .openBLAS, seconds: [:]) }
        let operands = shapes.map { shape in
            (a: Tensor.randomForTuning(shape.m * shape.k), b: Tensor.randomForTuning(shape.k * shape.n),
             c: UnsafeMutablePointer<Float>.allocate(capacity: shape.m * shape.n))
        }
        defer { operands.forEach { $0.c.deallocate() } }
        let smallOperands = smallShapes.map { shape in
            (a: Tensor.randomForTuning(shape.m * shape.k), b: Tensor.randomForTuning(shape.k * shape.n),
             c: UnsafeMutablePointer<Float>.allocate(capacity: shape.m * shape.n))
        }
        defer { smallOperands.forEach { $0.c.deallocate() } }
        var seconds: [String: Double] = [:]
        /// Keeps the best time of `body` under `name`.
        func time(_ name: String, _ body: () -> Void) {
            let start = DispatchTime.now().uptimeNanoseconds
            body()
            seconds[name] = Swift.min(seconds[name] ?? .infinity, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        }
        // Alternate the candidates, so that a slow moment of the machine does not favour one.
        for _ in 0..<repeats {
            for candidate in kernels {
                time(candidate.name) {
                    for (shape, operand) in zip(shapes, operands) {
                        BLAS.sgemm(m: shape.m, n: shape.n, k: shape.k, a: operand.a.pointer, lda: shape.k, b: operand.b.pointer,
                                   ldb: shape.n, c: operand.c, ldc: shape.n, kernel: candidate.kernel, precision: candidate.precision)
                    }
                }
            }
            for candidate in candidates {
                time(Choice.timingKey(candidate, small: true)) {
                    for _ in 0..<smallRepeats {
                        for (shape, operand) in zip(smallShapes, smallOperands) {
                            BLAS.sgemm(m: shape.m, n: shape.n, k: shape.k, a: operand.a.pointer, lda: shape.k, b: operand.b.pointer,
                                       ldb: shape.n, c: operand.c, ldc: shape.n, parallel: false, kernel: candidate)
                        }
                    }
                }
            }
        }
        let fastest = candidates.min { (seconds[Choice.timingKey($0)] ?? .infinity) < (seconds[Choice.timingKey($1)] ?? .infinity) }
        return Choice(machine: machine, float32Kernel: fastest ?? .openBLAS, seconds: seconds)
    }

    /// The choices kept in `file`, by machine (empty when there is no readable file).
    static func keptChoices(file: String) -> [String: Choice] {
        guard let data = FileManager.default.contents(atPath: file) else { return [:] }
        return (try? JSONDecoder().decode([String: Choice].self, from: data)) ?? [:]
    }

    /// The choice kept in `file` for this machine, if there is one (nothing is measured).
    public static func kept(file: String) -> Choice? {
        let cap = ComputeSettings.current.isa
        guard let kept = keptChoices(file: file)[machine], kept.machine == machine,
              InstructionSet.capped(cap, { GemmKernel.available }).contains(kept.float32Kernel),
              !InstructionSet.capped(cap, { GEMMPrecision.bfloat16InHardware }) || kept.seconds[Choice.bfloat16TimingKey] != nil
        else { return nil }
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
        choices[measured.machine] = measured  // per-shape choices are measured again with the new GEMM
        save(choices, to: file)
        return (measured, true)
    }

    // MARK: Per-shape choices

    /// The per-shape choices of a run (`ComputeSettings.tuning`) and the file they are kept in;
    /// without a file per-shape tuning is off (tests, library users, debug builds) and every layer
    /// uses its default kernel. Shared by the threads and tasks of the run (its state is behind a lock).
    public final class ShapeTable: Sendable {
        struct State {
            var file: String?
            var kept: [String: ShapeChoice] = [:]
            /// Shapes measured so far.
            var measured = 0
        }
        let state: Mutex<State>
        public init(file: String? = nil, kept: [String: ShapeChoice] = [:]) { state = Mutex(State(file: file, kept: kept)) }
    }

    /// Runs `body` with per-shape tuning into `file` (tests).
    public static func withShapeTuning<R>(file: String, _ body: () throws -> R) rethrows -> R {
        var settings = ComputeSettings.current
        settings.tuning = ShapeTable(file: file, kept: keptChoices(file: file)[machine]?.shapes ?? [:])
        return try settings.run(body)
    }

    /// How many shapes have been measured so far (`bench model` runs a repetition again when it
    /// measured kernels, so that no row's time includes measuring).
    public static var measuredShapes: Int { ComputeSettings.current.tuning.state.withLock { $0.measured } }

    /// The per-shape choices in use, by shape key.
    public static var shapeChoices: [String: ShapeChoice] { ComputeSettings.current.tuning.state.withLock { $0.kept } }

    /// Runs `body` with the kernel chosen for `key`. With per-shape tuning on and no choice kept
    /// for `key`, times every candidate on this very call instead (each candidate does the work;
    /// up to three times, alternating, unless the first round took at least 20 ms and one candidate
    /// was 1.5 times faster than another), keeps the fastest in the choice file and returns its
    /// result. Off, or with one candidate, it is `body(candidates[0])`; the first is the default.
    static func tuned<Candidate: TuningCandidate, Result>(_ key: String, candidates: [Candidate],
                                                          _ body: (Candidate) -> Result) -> Result {
        precondition(!candidates.isEmpty, "tuned: no candidates for \(key)")
        let table = ComputeSettings.current.tuning
        let (file, kept) = table.state.withLock { ($0.file, $0.kept[key]?.kernel(as: Candidate.self)) }
        if let kept, candidates.contains(kept) { return body(kept) }
        guard let file, candidates.count > 1 else { return body(candidates[0]) }
        var seconds: [Candidate: Double] = [:]
        var best: (kernel: Candidate, seconds: Double, result: Result)?
        for round in 0..<3 {
            for candidate in candidates {
                let start = DispatchTime.now().uptimeNanoseconds
                let result = body(candidate)
                let elapsed = Swift.min(seconds[candidate] ?? .infinity, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
                seconds[candidate] = elapsed
                if let current = best, current.kernel != candidate, current.seconds <= elapsed { continue }
                best = (candidate, elapsed, result)
            }
            // One round is enough when it is long and decisive; close times are measured again, since
            // the first candidate also pays for the first touch of buffers (a close second may be the faster).
            if round == 0, let slowest = seconds.values.max(), let quickest = seconds.values.min(), slowest >= 0.02, slowest >= 1.5 * quickest {
                break
            }
        }
        guard let best else { return body(candidates[0]) }
        let chosen = ShapeChoice(kernel: best.kernel.rawValue,
                                 seconds: Dictionary(uniqueKeysWithValues: seconds.map { ($0.key.rawValue, $0.value) }))
        table.state.withLock {
            $0.kept[key] = chosen
            $0.measured += 1
        }
        keep(key, chosen, in: file)
        return best.result
    }

    /// Adds one per-shape choice to this machine's entry in `file` (read again first, so that other
    /// processes' additions stay). A file that cannot be written only costs measuring again.
    private static func keep(_ key: String, _ shape: ShapeChoice, in file: String) {
        var choices = keptChoices(file: file)
        guard var mine = choices[machine] else { return }
        mine.shapes = (mine.shapes ?? [:]).merging([key: shape]) { _, new in new }
        choices[machine] = mine
        save(choices, to: file)
    }

    private static func save(_ choices: [String: Choice], to file: String) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        if let data = try? encoder.encode(choices) {
            try? FileManager.default.createDirectory(atPath: (file as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try? AtomicFile.write(data, to: file)
        }
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

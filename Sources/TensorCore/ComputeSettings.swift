import CKernels
import COpenBLAS
import Foundation

/// How the numeric core computes: threads, convolution algorithm, GEMM precision and kernels,
/// instruction-set cap, buffer-pool size and the per-shape kernel choices. One value, built once
/// per run (the CLI from its flags and the environment, a server per request), carried by the
/// workflow engine (`Executor.Options.compute`) and read by the kernels as `ComputeSettings.current`,
/// a task-local: two runs in one process can use different settings. `run` binds a value for a
/// computation; `Parallel` hands it on to its worker threads.
public struct ComputeSettings: Sendable {
    /// Threads of parallel loops and parallel GEMMs.
    public var threads: Int
    /// How 3x3 convolutions are computed (or, with per-shape tuning, which algorithms are measured).
    public var convolution: ConvolutionMode
    /// The arithmetic of GEMMs (and of attention where the CPU multiplies bfloat16).
    public var precision: GEMMPrecision
    /// The float32 GEMM of large products, and of small ones (run on one thread).
    public var float32Kernel: GemmKernel
    public var smallFloat32Kernel: GemmKernel
    /// Why the float32 kernels are these ("default", the variable that chose them, or the measurement).
    public var kernelReason = "default (not measured)"
    /// The widest instruction set the kernels may use; nil for everything the CPU has.
    public var isa: InstructionSet?
    /// Bytes of freed large buffers kept for reuse (`BufferPool`).
    public var poolCapacity = 512 << 20
    /// Choices made explicitly (flag or environment), which measurements and modes leave alone.
    public var pinned: Set<Pinned> = []
    /// Per-shape kernel choices and the file they are kept in (`KernelTuning.tuned`); off by default.
    public var tuning = KernelTuning.ShapeTable()

    /// A setting chosen explicitly.
    public enum Pinned: Sendable, Hashable {
        /// The convolution mode: each 3x3 convolution uses it, nothing is measured.
        case convolution
        /// The GEMM precision: the fast mode and kernel measurements keep it.
        case precision
        /// The float32 GEMM kernel: measurements do not replace it.
        case float32Kernel
    }

    /// The defaults of this CPU: all cores, exact Winograd convolutions, float32 GEMMs with the
    /// kernel `GemmKernel.standard` picks, every instruction set (or at most `isa`).
    public init(isa: InstructionSet? = nil) {
        Parallel.keepOpenBLASSingleThreaded()
        threads = ProcessInfo.processInfo.activeProcessorCount
        convolution = .winograd
        precision = .float32
        self.isa = isa
        let kernel = InstructionSet.capped(isa) { GemmKernel.standard(openBLASCore: BLAS.openBLASCore, cpuHasAVX512: sdf_gemm_f32_available() != 0) }
        float32Kernel = kernel
        smallFloat32Kernel = kernel
    }

    /// The environment variables read (here only): `SDFLOW_THREADS`, `SDFLOW_CONV`
    /// (direct|winograd|fast), `SDFLOW_GEMM` (float32|bfloat16), `SDFLOW_SGEMM` (openblas|avx512)
    /// and `SDFLOW_ISA` (baseline|avx2|avx512|avx512bf16|amx). Empty ones are ignored.
    public static let variables = ["SDFLOW_THREADS", "SDFLOW_CONV", "SDFLOW_GEMM", "SDFLOW_SGEMM", "SDFLOW_ISA"]

    /// The defaults with the choices of `environment` applied; an unknown value is an error naming the variable.
    public static func fromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment) throws -> ComputeSettings {
        func value<T>(_ name: String, _ parse: (String) -> T?, expected: String) throws -> T? {
            guard let text = environment[name], !text.isEmpty else { return nil }
            guard let parsed = parse(text) else { throw SettingsError(message: "\(name)=\(text): expected \(expected)") }
            return parsed
        }
        let isa = try value("SDFLOW_ISA", InstructionSet.init(rawValue:), expected: InstructionSet.allCases.map(\.rawValue).joined(separator: ", "))
        var settings = ComputeSettings(isa: isa)
        if let threads = try value("SDFLOW_THREADS", { Int($0).flatMap { $0 > 0 ? $0 : nil } }, expected: "a positive number") {
            settings.threads = threads
        }
        if let mode = try value("SDFLOW_CONV", ConvolutionMode.init(rawValue:), expected: "direct, winograd or fast") {
            settings.convolution = mode
            settings.pinned.insert(.convolution)
        }
        if let precision = try value("SDFLOW_GEMM", GEMMPrecision.init(rawValue:), expected: "float32 or bfloat16") {
            settings.precision = precision
            settings.pinned.insert(.precision)
        }
        if let kernel = try value("SDFLOW_SGEMM", GemmKernel.init(rawValue:), expected: "openblas or avx512") {
            // AVX-512 only where this CPU (under the cap) has it; otherwise the default stays.
            if kernel == .openBLAS || InstructionSet.capped(isa, { sdf_gemm_f32_available() != 0 }) {
                (settings.float32Kernel, settings.smallFloat32Kernel) = (kernel, kernel)
            }
            settings.pinned.insert(.float32Kernel)
            settings.kernelReason = "SDFLOW_SGEMM=\(kernel.rawValue)"
        }
        return settings
    }

    /// A bad value in the environment.
    public struct SettingsError: Error, CustomStringConvertible {
        public let message: String
        public var description: String { message }
    }

    /// The settings of code that runs outside `run` (tests, library users): the environment's,
    /// or the defaults where the environment has a bad value.
    public static let process: ComputeSettings = (try? fromEnvironment()) ?? ComputeSettings()

    /// The settings of the running computation.
    @TaskLocal public static var current = process

    /// Runs `body` with these settings (for this task and the threads of its parallel loops).
    public func run<R>(_ body: () throws -> R) rethrows -> R {
        let previous = sdf_isa_cap_set(isaLevel)
        defer { sdf_isa_cap_set(previous) }
        return try Self.$current.withValue(self, operation: body)
    }

    /// The C kernels' cap for `isa`.
    var isaLevel: Int32 { isa?.level ?? Int32(SDF_ISA_AMX) }

    /// The opt-in fast mode: Winograd F(4x4,3x3) convolutions (unless the mode is pinned), GEMMs in
    /// bfloat16 with float32 accumulation where the CPU multiplies bfloat16 (unless the precision
    /// is pinned; `using` keeps them only where they measured faster), and up to 2 GB of freed
    /// buffers kept for reuse.
    public mutating func useFastMode() {
        if !pinned.contains(.convolution) { convolution = .fast }
        if !pinned.contains(.precision), InstructionSet.capped(isa, { GEMMPrecision.bfloat16InHardware }) { precision = .bfloat16 }
        poolCapacity = 2 << 30
    }

    /// These settings with a measured choice (`KernelTuning.choice`) applied: its float32 GEMMs for
    /// large and small products (unless pinned), in the fast mode bfloat16 GEMMs only where they
    /// measured faster (unless the precision is pinned), and its per-shape choices, to which
    /// shapes not measured yet are added the first time they run (kept in `file`).
    /// Debug builds keep their per-shape defaults: their timings say little about a release build's,
    /// and their tests stay deterministic (per-shape candidates agree only to rounding).
    public func using(_ choice: KernelTuning.Choice, from file: String) -> ComputeSettings {
        var settings = self
        if precision == .bfloat16, !pinned.contains(.precision) { settings.precision = choice.fastPrecision }
        if !pinned.contains(.float32Kernel) {
            settings.float32Kernel = choice.float32Kernel
            settings.smallFloat32Kernel = choice.smallFloat32Kernel
            settings.kernelReason = "\(choice.summary), kept in \(file)"
        }
        #if !DEBUG
        settings.tuning = KernelTuning.ShapeTable(file: file, kept: choice.shapes ?? [:])
        #endif
        return settings
    }

    /// What in these settings changes results, as lines of a cache key: the convolution mode, and
    /// the GEMM precision when not float32 (threads, kernels and caps change only rounding within
    /// the exact mode's bounds, and not at all for most ops).
    public var fingerprint: [String] {
        ["convolutions \(convolution.rawValue)"] + (precision == .float32 ? [] : ["gemm \(precision.rawValue)"])
    }

    /// The kernels in use, in one line (`sdflow --version`, `bench ops`).
    public var kernelSummary: String {
        run {
            "\(String(cString: sdf_kernel_set())) vector kernels, float32 GEMM \(float32Kernel.rawValue) (OpenBLAS \(BLAS.openBLASCore) kernels), "
                + "bfloat16 in hardware: \(GEMMPrecision.bfloat16InHardware ? sdf_gemm_bf16_amx_available() != 0 ? "yes (AMX tiles)" : "yes" : "no"), "
                + "\(threads) threads" + (isa.map { ", instruction sets capped at \($0.rawValue)" } ?? "")
        }
    }
}

/// The instruction-set levels the kernels can be capped at (`SDFLOW_ISA`), narrowest first: what
/// runs on an AVX2-only laptop can be run and measured on an AVX-512 server. The cap covers
/// sdflow's kernels; OpenBLAS chooses its own kernels when it loads (cap it with `OPENBLAS_CORETYPE`).
public enum InstructionSet: String, Sendable, CaseIterable, Codable {
    case baseline
    case avx2
    case avx512
    case avx512bf16
    /// AVX-512 BF16 and AMX tiles (Intel Sapphire Rapids and later).
    case amx

    var level: Int32 {
        switch self {
        case .baseline: Int32(SDF_ISA_BASELINE)
        case .avx2: Int32(SDF_ISA_AVX2)
        case .avx512: Int32(SDF_ISA_AVX512)
        case .avx512bf16: Int32(SDF_ISA_AVX512_BF16)
        case .amx: Int32(SDF_ISA_AMX)
        }
    }

    /// `body` evaluated on this thread with the kernels capped at `cap` (nil: no cap).
    static func capped<R>(_ cap: InstructionSet?, _ body: () -> R) -> R {
        let previous = sdf_isa_cap_set(cap?.level ?? Int32(SDF_ISA_AMX))
        defer { sdf_isa_cap_set(previous) }
        return body()
    }
}

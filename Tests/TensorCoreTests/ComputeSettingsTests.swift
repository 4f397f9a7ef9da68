import CKernels
import TensorCore
import Testing

/// Compute settings: read from the environment in one place, bound per computation (and handed to
/// the worker threads of its parallel loops), so that two runs in one process can differ.
struct ComputeSettingsTests {
    @Test func theEnvironmentIsReadIntoOneValue() throws {
        let settings = try ComputeSettings.fromEnvironment([
            "SDFLOW_THREADS": "3", "SDFLOW_CONV": "direct", "SDFLOW_GEMM": "bfloat16", "SDFLOW_SGEMM": "openblas", "SDFLOW_ISA": "avx2",
        ])
        #expect(settings.threads == 3 && settings.convolution == .direct && settings.precision == .bfloat16)
        #expect(settings.float32Kernel == .openBLAS && settings.isa == .avx2)
        #expect(settings.pinned == [.convolution, .precision, .float32Kernel])
        #expect(settings.kernelReason == "SDFLOW_SGEMM=openblas")
        #expect(settings.fingerprint == ["convolutions direct", "gemm bfloat16"])
        // Pinned choices survive the fast mode; an empty variable is no choice.
        var fast = settings
        fast.useFastMode()
        #expect(fast.convolution == .direct && fast.precision == .bfloat16 && fast.poolCapacity == 2 << 30)
        let defaults = try ComputeSettings.fromEnvironment(["SDFLOW_CONV": ""])
        #expect(defaults.convolution == .winograd && defaults.pinned.isEmpty && defaults.fingerprint == ["convolutions winograd"])
        for (name, value) in [("SDFLOW_CONV", "winograd2"), ("SDFLOW_THREADS", "0"), ("SDFLOW_ISA", "sse9"), ("SDFLOW_GEMM", "int8")] {
            let error = #expect(throws: ComputeSettings.SettingsError.self) { try ComputeSettings.fromEnvironment([name: value]) }
            #expect(error?.description.contains("\(name)=\(value)") == true)
        }
    }

    @Test func twoComputationsInOneProcessKeepTheirOwnSettings() async {
        func settings(threads: Int, convolution: ConvolutionMode) -> ComputeSettings {
            var settings = ComputeSettings.current
            (settings.threads, settings.convolution) = (threads, convolution)
            return settings
        }
        let first = settings(threads: 1, convolution: .direct), second = settings(threads: 2, convolution: .fast)
        /// What the workers of a parallel loop see, under `settings`.
        @Sendable func seenByWorkers(_ settings: ComputeSettings) -> Set<String> {
            settings.run {
                var seen = Array(repeating: "", count: 64)
                seen.withUnsafeMutableBufferPointer { buffer in
                    let base = buffer.baseAddress!
                    Parallel.forEach(64) { i in
                        let current = ComputeSettings.current
                        (base + i).pointee = "\(current.threads) \(current.convolution.rawValue)"
                    }
                }
                return Set(seen)
            }
        }
        async let a = Task.detached { (0..<20).map { _ in seenByWorkers(first) } }.value
        async let b = Task.detached { (0..<20).map { _ in seenByWorkers(second) } }.value
        let (seenA, seenB) = await (a, b)
        #expect(seenA.allSatisfy { $0 == ["1 direct"] })
        #expect(seenB.allSatisfy { $0 == ["2 fast"] })
        #expect(ComputeSettings.current.threads == ComputeSettings.process.threads)
    }

    /// The baseline (no AVX) clones compute what the widest ones do, up to float32 rounding; the
    /// cap holds on the workers too and ends with the computation.
    @Test func anInstructionSetCapRunsTheNarrowerKernels() {
        var capped = ComputeSettings.current
        capped.isa = .baseline
        capped.threads = 2
        var state: UInt32 = 7
        let values = (0..<(2 * 16 * 24 * 24)).map { _ in
            state = state &* 1_664_525 &+ 1_013_904_223
            return Float(state >> 8) / Float(1 << 24) - 0.5
        }
        let x = Tensor(shape: [2, 16, 24, 24], values: values)
        let w = Tensor(shape: [16, 16, 3, 3], values: Array(values.prefix(16 * 16 * 9)))
        let wide = x.conv2d(weight: w, bias: nil, padding: .uniform(1), mode: .winograd).silu().softmax()
        let (narrow, kernels) = capped.run {
            (x.conv2d(weight: w, bias: nil, padding: .uniform(1), mode: .winograd).silu().softmax(), String(cString: sdf_kernel_set()))
        }
        #expect(kernels == "baseline")
        #expect(narrow.maxAbsDifference(wide) <= 1e-5)
        #expect(String(cString: sdf_kernel_set()) != "baseline" || ComputeSettings.current.isa == .baseline)
    }
}

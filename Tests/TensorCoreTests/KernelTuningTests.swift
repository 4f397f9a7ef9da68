import Foundation
import TensorCore
import TestSupport
import Testing

/// Kernel choices by measurement: a choice names a candidate of this CPU with its times, is kept
/// per machine in a file, and is measured again for another machine or a damaged file.
@Suite(.serialized) struct KernelTuningTests {
    let folder = TemporaryFolder()

    @Test func aChoiceIsMeasuredOnceAndKeptForThisMachine() throws {
        let file = folder.file("cache/kernels.json")
        let first = KernelTuning.choice(file: file, repeats: 1)
        #expect(first.measuredNow && first.choice.machine == KernelTuning.machine)
        // Every candidate timed (two float32 GEMMs with AVX-512, none to time without, and the
        // bfloat16 one with AVX-512 BF16), and the fastest float32 GEMM chosen.
        let float32 = first.choice.seconds.filter { GemmKernel(rawValue: $0.key) != nil }
        if let fastest = float32.min(by: { $0.value < $1.value }) {
            #expect(float32.count == 2 && first.choice.seconds.values.allSatisfy { $0 > 0 })
            #expect(fastest.key == first.choice.float32Kernel.rawValue)
            #expect((first.choice.seconds["bfloat16"] != nil) == GEMMPrecision.bfloat16InHardware)
        }
        let again = KernelTuning.choice(file: file, repeats: 1)
        #expect(!again.measuredNow && again.choice == first.choice)
        #expect(KernelTuning.choice(file: file, remeasure: true, repeats: 1).measuredNow)
    }

    @Test func anotherMachinesChoiceOrADamagedFileIsMeasuredAgain() throws {
        let file = folder.file("kernels.json")
        let foreign = KernelTuning.Choice(machine: "another CPU; 64 threads; OpenBLAS SkylakeX; avx512; release",
                                          float32Kernel: .openBLAS, seconds: ["openblas": 1, "avx512": 2])
        try JSONEncoder().encode([foreign.machine: foreign]).write(to: URL(fileURLWithPath: file))
        let remeasured = KernelTuning.choice(file: file, repeats: 1)
        #expect(remeasured.measuredNow && remeasured.choice.machine == KernelTuning.machine)
        // Both machines' choices are kept.
        let kept = try JSONDecoder().decode([String: KernelTuning.Choice].self, from: Data(contentsOf: URL(fileURLWithPath: file)))
        #expect(kept[foreign.machine] == foreign && kept[KernelTuning.machine] == remeasured.choice)
        try Data("{ not json".utf8).write(to: URL(fileURLWithPath: file))
        #expect(KernelTuning.choice(file: file, repeats: 1).measuredNow)
        #expect(!KernelTuning.choice(file: file, repeats: 1).measuredNow)  // and the damaged file was replaced
    }

    @Test(.enabled(if: ProcessInfo.processInfo.environment["SDFLOW_SGEMM"] == nil))
    func theChoiceIsUsedAndSaysWhy() throws {
        let file = folder.file("kernels.json")
        let choice = KernelTuning.choice(file: file, repeats: 1).choice
        let settings = ComputeSettings.current.using(choice, from: file)
        #expect(settings.float32Kernel == choice.float32Kernel && settings.smallFloat32Kernel == choice.smallFloat32Kernel)
        // The small products' kernel is the one that timed fastest on them, apart from the large ones'.
        let small = choice.seconds.filter { $0.key.hasSuffix(" small") }
        #expect(small.count == (choice.seconds.count > 1 ? 2 : 0))
        if let fastest = small.min(by: { $0.value < $1.value }) { #expect(fastest.key == choice.smallFloat32Kernel.rawValue + " small") }
        #expect(settings.kernelReason.contains(file) && settings.kernelReason.contains(choice.float32Kernel.rawValue))
    }

    @Test func theFastModeMultipliesInBfloat16OnlyWhereThatMeasuredFaster() {
        let machine = KernelTuning.machine
        let slower = KernelTuning.Choice(machine: machine, float32Kernel: .avx512, seconds: ["avx512": 0.008, "openblas": 0.035, "bfloat16": 0.015])
        let faster = KernelTuning.Choice(machine: machine, float32Kernel: .openBLAS, seconds: ["avx512": 0.024, "openblas": 0.023, "bfloat16": 0.012])
        let unmeasured = KernelTuning.Choice(machine: machine, float32Kernel: .openBLAS, seconds: [:])
        #expect(slower.fastPrecision == .float32 && slower.summary.contains("bfloat16 measured slower"))
        #expect(faster.fastPrecision == .bfloat16 && faster.summary.contains("multiplies in bfloat16"))
        #expect(unmeasured.fastPrecision == .float32)
    }

    @Test func aConvolutionShapeIsMeasuredOnFirstUseAndKept() throws {
        let file = folder.file("shapes/kernels.json")
        _ = KernelTuning.choice(file: file, repeats: 1)  // this machine's entry
        let x = Tensor.random([1, 8, 32, 32], seed: 1), w = Tensor.random([16, 8, 3, 3], seed: 2), b = Tensor.random([16], seed: 3)
        let (first, chosen) = try KernelTuning.withShapeTuning(file: file) {
            let y = x.conv2d(weight: w, bias: b, stride: 1, padding: .uniform(1))
            #expect(KernelTuning.measuredShapes == 1)
            let shapes = KernelTuning.shapeChoices
            let choice = try #require(shapes.values.first)
            // Both exact candidates timed; the fastest chosen; its result returned.
            #expect(shapes.count == 1 && Set(choice.seconds.keys) == ["winograd", "direct"])
            #expect(choice.seconds[choice.kernel] == choice.seconds.values.min())
            _ = x.conv2d(weight: w, bias: b, stride: 1, padding: .uniform(1))
            #expect(KernelTuning.measuredShapes == 1)  // measured once
            return (y, try #require(choice.kernel(as: ConvolutionMode.self)))
        }
        #expect(first.scalars == x.conv2d(weight: w, bias: b, stride: 1, padding: .uniform(1), mode: chosen).scalars)
        // Another process (here: another task) reads the choice from the file instead of measuring.
        KernelTuning.withShapeTuning(file: file) {
            let again = x.conv2d(weight: w, bias: b, stride: 1, padding: .uniform(1))
            #expect(KernelTuning.measuredShapes == 0 && again.scalars == first.scalars)
        }
        let kept = try #require(KernelTuning.kept(file: file)?.shapes)
        #expect(kept.keys.contains { $0.hasPrefix("conv3x3 winograd/float32 1x8x32x32 -> 16") })
    }

    @Test func anAttentionShapeIsMeasuredOnFirstUse() throws {
        let file = folder.file("attention/kernels.json")
        _ = KernelTuning.choice(file: file, repeats: 1)
        let q = Tensor.random([1, 64, 32], seed: 4), k = Tensor.random([1, 64, 32], seed: 5), v = Tensor.random([1, 64, 32], seed: 6)
        try KernelTuning.withShapeTuning(file: file) {
            let y = Tensor.attention(query: q, key: k, value: v, heads: 2)
            let choice = try #require(KernelTuning.shapeChoices.values.first)
            #expect(Set(choice.seconds.keys) == ["48", "24"])  // block sizes below 64 tokens, and the default
            guard case .blocked(let size, .float32) = try #require(choice.kernel(as: AttentionVariant.self)) else {
                Issue.record("expected a float32 block size, got \(choice.kernel)")
                return
            }
            #expect(y.scalars == Tensor.attention(query: q, key: k, value: v, heads: 2, queryChunk: size).scalars)
        }
    }

    @Test func withoutAChoiceFileNothingIsMeasured() {
        let x = Tensor.random([1, 4, 16, 16], seed: 7), w = Tensor.random([4, 4, 3, 3], seed: 8)
        _ = x.conv2d(weight: w, bias: nil, stride: 1, padding: .uniform(1))
        #expect(KernelTuning.measuredShapes == 0 && KernelTuning.shapeChoices.isEmpty)
    }
}

extension Tensor {
    /// Deterministic values in [-0.5, 0.5).
    fileprivate static func random(_ shape: [Int], seed: UInt32) -> Tensor {
        var state = seed
        return Tensor(shape: shape, values: (0..<shape.reduce(1, *)).map { _ in
            state = state &* 1_664_525 &+ 1_013_904_223
            return Float(state >> 8) / Float(1 << 24) - 0.5
        })
    }
}

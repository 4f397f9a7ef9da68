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
        #expect(Float32Kernel(rawValue: first.choice.float32Kernel) != nil)
        // Every candidate timed (two with AVX-512, none to time without), and the fastest chosen.
        if let fastest = first.choice.seconds.min(by: { $0.value < $1.value }) {
            #expect(first.choice.seconds.count == 2 && first.choice.seconds.values.allSatisfy { $0 > 0 })
            #expect(fastest.key == first.choice.float32Kernel)
        }
        let again = KernelTuning.choice(file: file, repeats: 1)
        #expect(!again.measuredNow && again.choice == first.choice)
        #expect(KernelTuning.choice(file: file, remeasure: true, repeats: 1).measuredNow)
    }

    @Test func anotherMachinesChoiceOrADamagedFileIsMeasuredAgain() throws {
        let file = folder.file("kernels.json")
        let foreign = KernelTuning.Choice(machine: "another CPU; 64 threads; OpenBLAS SkylakeX; avx512; release",
                                          float32Kernel: "openblas", seconds: ["openblas": 1, "avx512": 2])
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
        let previous = BLAS.float32Kernel
        defer { BLAS.float32Kernel = previous }
        let choice = KernelTuning.choice(file: file, repeats: 1).choice
        KernelTuning.apply(choice, from: file)
        #expect(BLAS.float32Kernel.rawValue == choice.float32Kernel)
        #expect(KernelTuning.reason.contains(file) && KernelTuning.reason.contains(choice.float32Kernel))
    }
}

import ArgumentParser
import TensorCore

/// `sdflow tune`: measures the kernel candidates on this machine and keeps the fastest.
struct Tune: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure the kernel candidates on this machine and keep the fastest (done by itself on first use).",
        discussion: """
            Times OpenBLAS's and sdflow's float32 GEMM on the matrix products of an SD 1.x UNet (on CPUs \
            with AVX-512; elsewhere OpenBLAS is the only candidate) and keeps the choice per CPU model, \
            thread count, OpenBLAS kernels and build in kernels.json of the default cache folder. \
            SDFLOW_SGEMM=openblas|avx512 overrides it.
            """)

    @Option(help: "Threads to measure with (default: all cores; a choice is kept per thread count).")
    var threads: Int?

    func run() {
        if let threads { Parallel.setThreadCount(threads) }
        let (choice, _) = KernelTuning.choice(file: Engine.kernelChoiceFile, remeasure: true)
        print("machine: \(choice.machine)")
        print("float32 GEMM: \(choice.summary)")
        print("kept in \(Engine.kernelChoiceFile)")
    }
}

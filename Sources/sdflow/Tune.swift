import ArgumentParser
import TensorCore

/// `sdflow tune`: measures the kernel candidates on this machine and keeps the fastest.
struct Tune: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure the kernel candidates on this machine and keep the fastest (done by itself on first use).",
        discussion: """
            Times OpenBLAS's and sdflow's float32 GEMM on the matrix products of an SD 1.x UNet (on CPUs \
            with AVX-512; elsewhere OpenBLAS is the only candidate), and with AVX-512 BF16 the fast mode's \
            bfloat16 GEMM (used by --fast only where it is faster), and keeps the choice per CPU model, \
            thread count, OpenBLAS kernels and build in kernels.json of the default cache folder. \
            SDFLOW_SGEMM=openblas|avx512 and SDFLOW_GEMM=float32|bfloat16 override it. The per-shape \
            choices (3x3 convolutions: Winograd or im2col; attention: the query block size) are \
            forgotten and measured again on the shapes of the next model run (release builds).
            """)

    @Option(help: "Threads to measure with (default: all cores; a choice is kept per thread count).")
    var threads: Int?

    func run() throws {
        let (choice, _) = try Engine.computeSettings(threads: threads).run {
            KernelTuning.choice(file: Engine.kernelChoiceFile, remeasure: true)
        }
        print("machine: \(choice.machine)")
        print("float32 GEMM: \(choice.summary)")
        print("kept in \(Engine.kernelChoiceFile)")
    }
}

import DiffusionModels
import Foundation
import TensorCore

/// What `sdflow --version` prints: the version, the commit sdflow was built from and the
/// kernels it runs on this CPU.
enum SDFlowVersion {
    static let number = "0.6.0"

    /// The commit: from `BUILD` in the installed data folder (written by scripts/install.sh), or
    /// from the checkout's `.git` when sdflow runs from its build folder.
    static var commit: String {
        if let build = try? SDFlowData.path("BUILD"), let text = try? String(contentsOfFile: build, encoding: .utf8),
           let line = text.split(separator: "\n").first(where: { $0.hasPrefix("commit ") }) {
            return String(line.dropFirst("commit ".count))
        }
        guard let checkout = SDFlowData.folders.last, let head = try? String(contentsOfFile: checkout + "/.git/HEAD", encoding: .utf8)
        else { return "unknown" }
        let trimmed = head.trimmingCharacters(in: .whitespacesAndNewlines)
        guard trimmed.hasPrefix("ref: ") else { return trimmed }
        let ref = String(trimmed.dropFirst("ref: ".count))
        if let loose = try? String(contentsOfFile: checkout + "/.git/" + ref, encoding: .utf8) {
            return loose.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        let packed = (try? String(contentsOfFile: checkout + "/.git/packed-refs", encoding: .utf8)) ?? ""
        return packed.split(separator: "\n").first { $0.hasSuffix(" " + ref) }.map { String($0.prefix(40)) } ?? "unknown"
    }

    static var text: String {
        let measured = KernelTuning.kept(file: Engine.kernelChoiceFile).map { "float32 GEMM for models measured here: \($0.summary)" }
            ?? "float32 GEMM for models: not measured here yet (the first run of a model, or sdflow tune)"
        return "sdflow \(number) (commit \(commit.prefix(12)))\nkernels: \(ComputeSettings.process.kernelSummary)\n\(measured)"
    }
}

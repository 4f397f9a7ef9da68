import ArgumentParser
import Foundation
import SafeTensors
import TensorCore

/// `sdflow convert`: a pickled PyTorch checkpoint rewritten as `.safetensors`, without running it.
struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write the weights of a PyTorch .pth/.pt/.ckpt/.bin file as .safetensors.",
        discussion: """
            The checkpoint is read by sdflow's restricted unpickler, which runs none of the file's code
            and refuses anything but tensors and plain containers (the rules of PyTorch's
            torch.load(weights_only=True)). A training checkpoint's weights are unwrapped first: its
            state_dict, else params_ema, else params. Tensors keep their dtype; names are the dict keys
            joined with dots. sdflow reads pickled files directly too: converting once makes later
            loads memory-mapped and instant.
            """)

    @Argument(help: "The PyTorch checkpoint (or a .safetensors file, copied as it is).")
    var input: String

    @Argument(help: "The .safetensors file to write.")
    var output: String

    @Flag(help: "Replace OUTPUT if it exists.")
    var overwrite = false

    func run() throws {
        guard output.hasSuffix(".safetensors") else { throw ValidationError("the output must be a .safetensors file: \(output)") }
        guard overwrite || !FileManager.default.fileExists(atPath: output) else {
            throw ValidationError("\(output) exists; give --overwrite to replace it")
        }
        let weights = try SafeTensorsFile.weights(path: input)
        let contents = weights.contents
        guard let base = contents.baseAddress else { throw ValidationError("\(input): empty") }
        try AtomicFile.write(Data(bytesNoCopy: UnsafeMutableRawPointer(mutating: base), count: contents.count, deallocator: .none), to: output)
        let dtypes = Dictionary(grouping: weights.entries.values, by: \.dtype.rawValue).map { "\($0.value.count) \($0.key)" }.sorted()
        print("\(output): \(weights.entries.count) tensors (\(dtypes.joined(separator: ", "))), \(contents.count / 1_000_000) MB")
    }
}

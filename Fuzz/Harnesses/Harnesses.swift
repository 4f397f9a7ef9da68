import DiffusionModels
import DiffusionNodes
import Foundation
import ImageIO
import ImageNodes
import NodeKit
import SafeTensors
import SDFlowPluginABI
import TensorCore
import WorkflowEngine

// libFuzzer harnesses for sdflow's readers of untrusted input. One binary holds them all; the
// environment variable SDFLOW_FUZZ_TARGET picks one (scripts/fuzz.sh sets it). Every harness
// feeds the input to a reader and accepts any thrown error: only a crash (trap, sanitizer report,
// timeout or memory blow-up) is a finding.
//
//   png, jpeg    ImageFile.decode on the bytes
//   safetensors  SafeTensorsFile on the bytes as a file, then every tensor read as float32
//   checkpoint   the bytes are a safetensors *header* (JSON); the file gets 16 MB of zeros as data
//                and is loaded as a ControlNet and as a single-file checkpoint (SDXL's too)
//   workflow     Workflow.parse and Graph validation against the built-in nodes
//   rerun        Workflow.load of the bytes as a PNG written by save_image (its metadata chunks)
//   plugin       a plugin's pack description built from the bytes, read by PluginLoader.read
//   pickle       TorchCheckpoint.read on the bytes as a file (a ZIP archive, or else a legacy stream; bytes
//                without the legacy magic are wrapped as a legacy file's object pickle), then
//                every tensor read as float32

/// A harness: takes one input.
typealias Harness = @Sendable (UnsafeRawBufferPointer) -> Void

let harnesses: [String: Harness] = [
    "png": decodeImage(signature: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]), "jpeg": decodeImage(signature: [0xFF, 0xD8, 0xFF]),
    "safetensors": readSafeTensors, "checkpoint": loadCheckpoint,
    "workflow": validateWorkflow, "rerun": rerunImage, "plugin": readPluginDescription, "pickle": readPickle,
]

nonisolated(unsafe) var selected: Harness?

@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>) -> Int32 {
    let name = ProcessInfo.processInfo.environment["SDFLOW_FUZZ_TARGET"] ?? ""
    guard let harness = harnesses[name] else {
        FileHandle.standardError.write(Data("set SDFLOW_FUZZ_TARGET to one of: \(harnesses.keys.sorted().joined(separator: ", "))\n".utf8))
        exit(2)
    }
    selected = harness
    return 0
}

/// Inputs run on one thread.
let singleThreaded: ComputeSettings = {
    var settings = ComputeSettings.process
    settings.threads = 1
    return settings
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func testOneInput(_ start: UnsafePointer<UInt8>?, _ count: Int) -> Int32 {
    singleThreaded.run { selected!(UnsafeRawBufferPointer(start: start, count: count)) }
    return 0
}

// MARK: - Files

/// A per-process scratch file in memory (/dev/shm when there is one) that holds the current input.
let scratch: String = {
    let folder = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
    return folder + "/sdflow-fuzz-\(getpid())"
}()

/// Writes `bytes` to `scratch` + `suffix` and returns the path.
func writeScratch(_ bytes: some Collection<UInt8>, suffix: String) -> String {
    let path = scratch + suffix
    _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
    return path
}

// MARK: - Harnesses

/// Decodes the input with its first bytes replaced by `signature`, so that every input reaches that
/// format's decoder. Images are limited to 65536 pixels, so that each input is decoded quickly (the
/// limit's own check is the same for every size and is tested elsewhere).
func decodeImage(signature: [UInt8]) -> Harness {
    { input in
        var data = Data(signature)
        if input.count > signature.count { data += input.dropFirst(signature.count) }
        _ = try? ImageFile.decode(data, name: "input", maximumPixels: 1 << 16)
    }
}

func readSafeTensors(_ input: UnsafeRawBufferPointer) {
    let path = writeScratch(input, suffix: ".safetensors")
    guard let file = try? SafeTensorsFile(path: path) else { return }
    for name in file.names { _ = try? file.tensor(name) }
}

func loadCheckpoint(_ input: UnsafeRawBufferPointer) {
    // Length, header, then 16 MB of zeros as a sparse tail (ftruncate): it costs nothing to write,
    // and the header is not parsed here, so the loader's own parser is the only one that runs.
    var bytes = [UInt8]()
    withUnsafeBytes(of: UInt64(input.count).littleEndian) { bytes += $0 }
    bytes += input
    let path = writeScratch(bytes, suffix: ".safetensors")
    guard truncate(path, off_t(bytes.count + (16 << 20))) == 0 else { return }
    // The same file as a ControlNet (for SD 1.5's UNet and as its shapes say).
    if let controlNet = try? ControlNetFile(path: path) {
        _ = try? controlNet.load(for: .sd15)
        _ = try? controlNet.load()
    }
    guard let checkpoint = try? Checkpoint(path: path) else { return }
    _ = try? checkpoint.loadTextEncoder()
    _ = try? checkpoint.loadTextEncoder2()
    _ = try? checkpoint.loadVAE()
    _ = try? checkpoint.loadUNet()
}

let registry: NodeRegistry = {
    var registry = NodeRegistry()
    try! registry.register(ImageNodes.pack)
    try! registry.register(DiffusionNodes.pack)
    return registry
}()

func validateWorkflow(_ input: UnsafeRawBufferPointer) {
    guard let text = String(bytes: input, encoding: .utf8),
          let workflow = try? Workflow.parse(text, path: "/fuzz/workflow.yaml") else { return }
    _ = try? Graph(workflow: workflow, registry: registry, currentDirectory: "/fuzz")
}

func rerunImage(_ input: UnsafeRawBufferPointer) {
    let path = writeScratch(input, suffix: ".png")
    guard let workflow = try? Workflow.load(path: path) else { return }
    _ = try? Graph(workflow: workflow, registry: registry, currentDirectory: "/fuzz")
}

// MARK: - Plugin descriptions

/// Reads fields from the input, and yields zeros once it is used up.
struct FieldReader {
    var bytes: ArraySlice<UInt8>
    mutating func byte() -> UInt8 { bytes.popFirst() ?? 0 }
    mutating func int32() -> Int32 { Int32(bitPattern: (0..<4).reduce(UInt32(0)) { v, _ in v << 8 | UInt32(byte()) }) }
    mutating func double() -> Double { Double(bitPattern: (0..<8).reduce(UInt64(0)) { v, _ in v << 8 | UInt64(byte()) }) }
}

/// Keeps the C memory of one description alive until the harness has read it.
final class Arena {
    private var blocks: [UnsafeMutableRawPointer] = []
    deinit { blocks.forEach { free($0) } }

    /// A NUL-terminated copy of `length` input bytes (any bytes, not necessarily UTF-8), or NULL.
    func string(_ reader: inout FieldReader) -> UnsafePointer<CChar>? {
        let length = Int(reader.byte())
        if length == 255 { return nil }
        let memory = malloc(length + 1)!.bindMemory(to: CChar.self, capacity: length + 1)
        for i in 0..<length { memory[i] = CChar(bitPattern: reader.byte()) }
        memory[length] = 0
        blocks.append(UnsafeMutableRawPointer(memory))
        return UnsafePointer(memory)
    }

    /// An array and the count the plugin claims. A count byte below 8 gives that many elements,
    /// 8...15 the same count with a NULL array; a larger byte gives a count that is out of range (a
    /// lie the reader must refuse without touching the array, which then holds one element).
    func array<T>(_ reader: inout FieldReader, _ element: (inout FieldReader) -> T) -> (UnsafePointer<T>?, Int32) {
        let claim = reader.byte()
        let lies: [Int32] = [-1, Int32.min, 4097, Int32.max, -4096]
        let count = claim < 16 ? Int(claim % 8) : 1
        let memory = UnsafeMutablePointer<T>.allocate(capacity: max(count, 1))
        for i in 0..<count { memory.advanced(by: i).initialize(to: element(&reader)) }
        blocks.append(UnsafeMutableRawPointer(memory))
        if claim < 8 { return (UnsafePointer(memory), Int32(count)) }
        if claim < 16 { return (nil, Int32(count)) }
        return (UnsafePointer(memory), lies[Int(claim) % lies.count])
    }
}

private let runNothing: sdf_run_function = { _, _, _, _, _ in 0 }

func readPluginDescription(_ input: UnsafeRawBufferPointer) {
    var reader = FieldReader(bytes: ArraySlice(input))
    let arena = Arena()
    /// A struct's size, now and then a wrong one (never larger than the memory, which the host cannot check).
    func size<T>(_ r: inout FieldReader, _ type: T.Type) -> UInt32 {
        let size = UInt32(MemoryLayout<T>.size)
        switch r.byte() % 8 { case 6: return 0; case 7: return size - 8; default: return size }
    }
    func port(_ r: inout FieldReader) -> sdf_port {
        sdf_port(struct_size: size(&r, sdf_port.self), name: arena.string(&r), type: sdf_value_type(rawValue: UInt32(r.byte() % 10)), optional: Int32(r.byte() % 3), help: arena.string(&r))
    }
    func parameter(_ r: inout FieldReader) -> sdf_parameter {
        sdf_parameter(struct_size: size(&r, sdf_parameter.self), name: arena.string(&r), kind: sdf_parameter_kind(rawValue: UInt32(r.byte() % 12)), minimum: r.double(), maximum: r.double(),
                      choices: arena.string(&r), default_value: arena.string(&r), help: arena.string(&r))
    }
    func node(_ r: inout FieldReader) -> sdf_node {
        let structSize = size(&r, sdf_node.self)
        let name = arena.string(&r), summary = arena.string(&r)
        let version = r.int32()
        let (inputs, inputCount) = arena.array(&r, port)
        let (outputs, outputCount) = arena.array(&r, port)
        let (parameters, parameterCount) = arena.array(&r, parameter)
        let flags = r.byte()
        return sdf_node(struct_size: structSize, name: name, summary: summary, version: version, inputs: inputs, input_count: inputCount,
                        outputs: outputs, output_count: outputCount, parameters: parameters, parameter_count: parameterCount,
                        is_output: Int32(flags & 1), run: flags & 2 == 0 ? runNothing : nil, node_data: nil)
    }
    let abi = reader.byte() == 0 ? SDFLOW_PLUGIN_ABI_VERSION : reader.int32()
    let packSize = size(&reader, sdf_pack.self)
    let name = arena.string(&reader), version = arena.string(&reader)
    let (nodes, nodeCount) = arena.array(&reader, node)
    var pack = sdf_pack(abi_version: abi, struct_size: packSize, name: name, version: version, nodes: nodes, node_count: nodeCount)
    guard let read = try? PluginLoader.read(&pack, path: "fuzz.so") else { return }
    // What the registry does with it: node names checked against the built-in ones.
    var registry = NodeRegistry()
    try? registry.register(ImageNodes.pack)
    try? registry.register(read)
    withExtendedLifetime(arena) {}
}

/// A PyTorch checkpoint through the restricted unpickler.
@Sendable func readPickle(_ input: UnsafeRawBufferPointer) {
    var data = Data(input)
    if !TorchCheckpoint.recognises(data) {
        // A bare pickle: the object of a legacy file (magic, protocol 1001, system info {}, the
        // object, storage keys [] and nothing after), so that every input reaches the unpickler.
        data = Data([0x80, 0x02, 0x8A, 0x0A, 0x6C, 0xFC, 0x9C, 0x46, 0xF9, 0x20, 0x6A, 0xA8, 0x50, 0x19, 0x2E,
                     0x80, 0x02, 0x4D, 0xE9, 0x03, 0x2E, 0x80, 0x02, 0x7D, 0x2E]) + data
    }
    guard let file = try? TorchCheckpoint.read(path: writeScratch(data, suffix: ".pth")) else { return }
    for name in file.names { _ = try? file.tensor(name) }
}

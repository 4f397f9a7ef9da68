import Foundation
import ImageIO
import NodeKit
import SDFlowPluginABI
import TensorCore

/// Exports a NodeKit pack through the C plugin ABI, so a pack written in Swift implements
/// the same `Node` protocol as the built-in packs and only adds one entry point:
///
///     @_cdecl("sdflow_plugin_pack")
///     public func sdflowPluginPack() -> UnsafeRawPointer {
///         PluginExport.pack(NodePack(name: "example", version: "1", nodes: [Sepia.self]))
///     }
///
/// Plugin nodes take and produce images, masks, latents, conditioning, tensors, numbers and
/// text (not models). Errors a node throws are reported to sdflow and fail that node only.
public enum PluginExport {
    /// The pack's C description: one per plugin library, built by the first call and kept for the
    /// process's life (sdflow keeps pointers into it). Written and read under `lock` only.
    nonisolated(unsafe) private static var exported: UnsafeMutablePointer<sdf_pack>?
    private static let lock = NSLock()

    /// The C description of `pack` (built once; it lives as long as the process).
    public static func pack(_ pack: @autoclosure () -> NodePack) -> UnsafeRawPointer {
        lock.lock()
        defer { lock.unlock() }
        if let exported { return UnsafeRawPointer(exported) }
        let p = pack()
        let nodes = UnsafeMutablePointer<sdf_node>.allocate(capacity: Swift.max(p.nodes.count, 1))
        for (i, node) in p.nodes.enumerated() { nodes[i] = describe(node) }
        let result = UnsafeMutablePointer<sdf_pack>.allocate(capacity: 1)
        result.initialize(to: sdf_pack(abi_version: SDFLOW_PLUGIN_ABI_VERSION, struct_size: size(sdf_pack.self), name: c(p.name), version: c(p.version),
                                       nodes: UnsafePointer(nodes), node_count: Int32(p.nodes.count)))
        exported = result
        return UnsafeRawPointer(result)
    }

    private static func c(_ s: String) -> UnsafePointer<CChar> { UnsafePointer(strdup(s)!) }

    /// The `struct_size` of an ABI struct.
    static func size<T>(_ type: T.Type) -> UInt32 { UInt32(MemoryLayout<T>.size) }

    private static func typeCode(_ type: ValueType) -> sdf_value_type {
        switch type {
        case .image: return SDF_TYPE_IMAGE
        case .mask: return SDF_TYPE_MASK
        case .latent: return SDF_TYPE_LATENT
        case .conditioning: return SDF_TYPE_CONDITIONING
        case .number: return SDF_TYPE_NUMBER
        case .text: return SDF_TYPE_TEXT
        default: return SDF_TYPE_TENSOR
        }
    }

    private static func ports(_ ports: [NodeDescription.Port]) -> UnsafePointer<sdf_port> {
        let list = UnsafeMutablePointer<sdf_port>.allocate(capacity: Swift.max(ports.count, 1))
        for (i, p) in ports.enumerated() {
            list[i] = sdf_port(struct_size: size(sdf_port.self), name: c(p.name), type: typeCode(p.type), optional: p.optional ? 1 : 0, help: c(p.help))
        }
        return UnsafePointer(list)
    }

    private static func describe(_ node: NodeImplementation) -> sdf_node {
        let d = node.description
        let parameters = UnsafeMutablePointer<sdf_parameter>.allocate(capacity: Swift.max(d.parameters.count, 1))
        for (i, p) in d.parameters.enumerated() {
            let kind: sdf_parameter_kind
            var minimum = 1.0, maximum = 0.0
            var choices: UnsafePointer<CChar>?
            switch p.kind {
            case .integer(let range):
                kind = SDF_PARAMETER_INTEGER
                if let range { minimum = Double(range.lowerBound); maximum = Double(range.upperBound) }
            case .seed: kind = SDF_PARAMETER_SEED
            case .inputPath(.file): kind = SDF_PARAMETER_INPUT_FILE
            case .inputPath(.folder): kind = SDF_PARAMETER_INPUT_FOLDER
            case .inputPath(.fileOrFolder): kind = SDF_PARAMETER_INPUT_FILE_OR_FOLDER
            case .outputPath: kind = SDF_PARAMETER_OUTPUT_PATH
            case .number(let range):
                kind = SDF_PARAMETER_NUMBER
                if let range { minimum = range.lowerBound; maximum = range.upperBound }
            case .boolean: kind = SDF_PARAMETER_BOOLEAN
            case .choice(let options):
                kind = SDF_PARAMETER_CHOICE
                choices = c(options.joined(separator: ","))
            case .text: kind = SDF_PARAMETER_TEXT
            }
            parameters[i] = sdf_parameter(struct_size: size(sdf_parameter.self), name: c(p.name), kind: kind, minimum: minimum, maximum: maximum, choices: choices,
                                          default_value: p.defaultValue.map { c($0.description) }, help: c(p.help))
        }
        let box = Unmanaged.passRetained(NodeBox(node)).toOpaque()
        return sdf_node(struct_size: size(sdf_node.self), name: c(d.name), summary: c(d.summary), version: Int32(d.version),
                        inputs: ports(d.inputs), input_count: Int32(d.inputs.count),
                        outputs: ports(d.outputs), output_count: Int32(d.outputs.count),
                        parameters: UnsafePointer(parameters), parameter_count: Int32(d.parameters.count),
                        is_output: d.isOutput ? 1 : 0, run: runNode, node_data: box)
    }
}

/// Keeps a node implementation alive behind the C `node_data` pointer.
final class NodeBox {
    let node: NodeImplementation
    init(_ node: NodeImplementation) { self.node = node }
}

/// The C run function of every exported node: runs the Swift node with a context over the
/// host's callbacks, hands its outputs back, and turns a thrown error into a message.
private let runNode: sdf_run_function = { data, host, context, message, size in
    guard let data, let host else { return 2 }
    guard host.pointee.struct_size >= PluginExport.size(sdf_host.self) else {
        if let message, size > 0 { _ = "the host's callbacks are older than this pack's ABI".withCString { strncpy(message, $0, size - 1) }; message[size - 1] = 0 }
        return 2
    }
    let box = Unmanaged<NodeBox>.fromOpaque(data).takeUnretainedValue()
    let nodeContext = HostContext(host: host, context: context, description: box.node.description)
    do {
        let outputs = try box.node.run(nodeContext)
        for (name, value) in outputs {
            guard nodeContext.send(name, value) == 0 else { throw NodeError.failed("the host refused output '\(name)'") }
        }
        return 0
    } catch {
        if let message, size > 0 {
            _ = "\(error)".withCString { strncpy(message, $0, size - 1) }
            message[size - 1] = 0
        }
        return 1
    }
}

/// `NodeContext` over the host callbacks of one execution.
final class HostContext: NodeContext {
    let host: UnsafePointer<sdf_host>
    let context: OpaquePointer?
    let description: NodeDescription
    let models = ModelCache()

    init(host: UnsafePointer<sdf_host>, context: OpaquePointer?, description: NodeDescription) {
        self.host = host
        self.context = context
        self.description = description
    }

    var nodeName: String { description.name }
    var batchItem: BatchItem? { nil }
    var executionKey: String { "" }
    var runInfo: RunInfo { RunInfo(workflowText: "", workflowPath: "", parameters: [:], upstream: []) }
    var isCancelled: Bool { host.pointee.is_cancelled(context) != 0 }
    func progress(completed: Int, total: Int) { host.pointee.progress(context, Int32(completed), Int32(total)) }
    func warn(_ message: String) { message.withCString { host.pointee.warn(context, $0) } }

    func parameter(_ name: String) -> ParameterValue? {
        guard let spec = description.parameter(name), let text = name.withCString({ host.pointee.parameter(context, $0) }) else { return nil }
        return ParameterText.parse(String(cString: text), kind: spec.kind)
    }

    func input(_ name: String) -> Value? {
        guard let v = name.withCString({ host.pointee.input(context, $0) })?.pointee else { return nil }
        func tensor() -> Tensor? {
            guard let data = v.data, v.rank >= 0, v.rank <= 8 else { return nil }
            let shape = withUnsafeBytes(of: v.shape) { Array($0.bindMemory(to: Int64.self).prefix(Int(v.rank))).map(Int.init) }
            return Tensor(shape: shape, values: Array(UnsafeBufferPointer(start: data, count: shape.reduce(1, *))))
        }
        func image() -> Image? {
            guard let pixels = tensor(), pixels.rank == 3, (1...4).contains(pixels.shape[0]) else { return nil }
            var metadata: [String: String] = [:]
            if let entries = v.metadata, v.metadata_count > 0 {
                for entry in UnsafeBufferPointer(start: entries, count: Int(v.metadata_count)) {
                    if let key = entry.key, let text = entry.value { metadata[String(cString: key)] = String(cString: text) }
                }
            }
            return Image(pixels: pixels, metadata: metadata, bitDepth: v.bit_depth == 16 ? 16 : 8)
        }
        switch v.type {
        case SDF_TYPE_IMAGE: return image().map(Value.image)
        case SDF_TYPE_MASK: return image().map(Value.mask)
        case SDF_TYPE_LATENT: return tensor().map(Value.latent)
        case SDF_TYPE_CONDITIONING: return tensor().map { Value.conditioning($0) }
        case SDF_TYPE_TENSOR: return tensor().map(Value.tensor)
        case SDF_TYPE_NUMBER: return .number(v.number)
        case SDF_TYPE_TEXT: return v.text.map { .text(String(cString: $0)) }
        default: return nil
        }
    }

    /// Hands an output to the host.
    func send(_ name: String, _ value: Value) -> Int32 {
        var v = sdf_value()
        v.struct_size = PluginExport.size(sdf_value.self)
        let tensor: Tensor?
        var image: Image?
        switch value {
        case .image(let i): v.type = SDF_TYPE_IMAGE; tensor = i.pixels; image = i
        case .mask(let i): v.type = SDF_TYPE_MASK; tensor = i.pixels; image = i
        case .latent(let t): v.type = SDF_TYPE_LATENT; tensor = t
        case .conditioning(let t, _): v.type = SDF_TYPE_CONDITIONING; tensor = t
        case .tensor(let t): v.type = SDF_TYPE_TENSOR; tensor = t
        case .number(let n): v.type = SDF_TYPE_NUMBER; v.number = n; tensor = nil
        case .text(let s):
            v.type = SDF_TYPE_TEXT
            return s.withCString { text in
                v.text = text
                return name.withCString { host.pointee.set_output(context, $0, &v) }
            }
        default: return 1
        }
        guard let tensor else { return name.withCString { host.pointee.set_output(context, $0, &v) } }
        let contiguous = tensor.copied()
        v.rank = Int32(contiguous.rank)
        withUnsafeMutableBytes(of: &v.shape) { raw in
            let shape = raw.bindMemory(to: Int64.self)
            for (i, d) in contiguous.shape.prefix(8).enumerated() { shape[i] = Int64(d) }
        }
        // An image's metadata as C strings that live until the host has copied the value.
        let metadata = (image?.metadata ?? [:]).sorted { $0.key < $1.key }.map { (strdup($0.key)!, strdup($0.value)!) }
        defer { metadata.forEach { free($0.0); free($0.1) } }
        let entries = metadata.map { sdf_metadata_entry(key: UnsafePointer($0.0), value: UnsafePointer($0.1)) }
        v.bit_depth = Int32(image?.bitDepth ?? 0)
        v.metadata_count = Int32(entries.count)
        return withExtendedLifetime(contiguous) {
            entries.withUnsafeBufferPointer { list in
                v.data = contiguous.pointer
                v.metadata = list.baseAddress
                return name.withCString { host.pointee.set_output(context, $0, &v) }
            }
        }
    }
}

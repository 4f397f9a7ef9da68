import Foundation
import ImageIO
import NodeKit
import SDFlowPluginABI
import TensorCore

/// Loads node packs from shared libraries through the C ABI of `sdflow_plugin.h`.
///
/// Plugins are found in the folders given with `--plugins`, in `SDFLOW_PLUGIN_PATH`
/// (colon-separated) and in the user plugin folder (`$XDG_DATA_HOME/sdflow/plugins`, else
/// `~/.local/share/sdflow/plugins`). A library without the entry point, with another ABI
/// version or with malformed descriptions is refused with a message naming the file. A node
/// that reports an error fails its execution, not the process.
public enum PluginLoader {
    /// A plugin that cannot be used.
    public struct LoadError: Error, CustomStringConvertible {
        public let path: String
        public let message: String
        public var description: String { "plugin \(path): \(message)" }
    }

    /// The user plugin folder.
    public static var userFolder: String {
        let environment = ProcessInfo.processInfo.environment
        let data = environment["XDG_DATA_HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory() + "/.local/share"
        return data + "/sdflow/plugins"
    }

    /// The folders to search, in order: explicit ones, SDFLOW_PLUGIN_PATH, the user folder.
    public static func folders(explicit: [String]) -> [String] {
        let fromEnvironment = (ProcessInfo.processInfo.environment["SDFLOW_PLUGIN_PATH"] ?? "")
            .split(separator: ":").map(String.init).filter { !$0.isEmpty }
        return explicit + fromEnvironment + [userFolder]
    }

    /// The shared libraries (`*.so`, `*.dylib`) in `folders` (missing folders are skipped;
    /// an explicit file path is taken as is).
    public static func libraries(in folders: [String]) -> [String] {
        var result: [String] = []
        for folder in folders {
            var isFolder: ObjCBool = false
            guard FileManager.default.fileExists(atPath: folder, isDirectory: &isFolder) else { continue }
            if !isFolder.boolValue { result.append(folder); continue }
            let names = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
            result += names.filter { $0.hasSuffix(".so") || $0.hasSuffix(".dylib") }.sorted().map { folder + "/" + $0 }
        }
        return result
    }

    /// Opens a plugin and returns its pack.
    public static func load(_ path: String) throws -> NodePack {
        guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL) else {
            throw LoadError(path: path, message: "cannot load: \(String(cString: dlerror()))")
        }
        guard let symbol = dlsym(handle, SDFLOW_PLUGIN_ENTRY_POINT) else {
            throw LoadError(path: path, message: "no entry point '\(SDFLOW_PLUGIN_ENTRY_POINT)' (is it an sdflow plugin?)")
        }
        let entry = unsafeBitCast(symbol, to: sdf_pack_function.self)
        guard let pack = entry() else { throw LoadError(path: path, message: "\(SDFLOW_PLUGIN_ENTRY_POINT)() returned no pack") }
        return try read(pack, path: path)
    }

    /// The pack a plugin's entry point returned, checked field by field (`path` names the plugin in errors).
    public static func read(_ pack: UnsafePointer<sdf_pack>, path: String) throws -> NodePack {
        guard pack.pointee.abi_version == SDFLOW_PLUGIN_ABI_VERSION else {
            let rebuild = pack.pointee.abi_version < SDFLOW_PLUGIN_ABI_VERSION
                ? "; rebuild it against this sdflow's sdflow_plugin.h (C) or its SDFlowPlugin library (Swift: `swift build -c release`)"
                : "; it needs a newer sdflow"
            throw LoadError(path: path, message: "built for plugin ABI version \(pack.pointee.abi_version); this sdflow supports version \(SDFLOW_PLUGIN_ABI_VERSION)\(rebuild)")
        }
        try checkSize(Int(pack.pointee.struct_size), of: sdf_pack.self, what: "the pack", path: path)
        guard let name = pack.pointee.name.map({ String(cString: $0) }), !name.isEmpty else {
            throw LoadError(path: path, message: "the pack has no name")
        }
        let version = pack.pointee.version.map { String(cString: $0) } ?? "0"
        let nodeList = try list(pack.pointee.nodes, count: pack.pointee.node_count, of: "nodes", in: path)
        let nodes = try nodeList.map { try implementation($0, path: path) }
        return NodePack(name: name, version: version, implementations: nodes, origin: path)
    }

    /// What is wrong with a struct's `struct_size`, or nil: it must be at least this version's size
    /// (a later version's larger structs are read up to the fields this one knows).
    static func sizeProblem<T>(_ size: Int, of type: T.Type) -> String? {
        let known = MemoryLayout<T>.size
        guard size >= known, size <= 1 << 16, size % MemoryLayout<T>.alignment == 0 else {
            return "struct_size \(size) is not the size of \(T.self) (\(known) bytes in ABI version \(SDFLOW_PLUGIN_ABI_VERSION)); set it to sizeof(\(T.self))"
        }
        return nil
    }

    /// Checks a described struct's `struct_size` (`sizeProblem`).
    static func checkSize<T>(_ size: Int, of type: T.Type, what: String, path: String) throws {
        if let problem = sizeProblem(size, of: type) { throw LoadError(path: path, message: "\(what): \(problem)") }
    }

    // MARK: - Descriptions

    static func implementation(_ node: sdf_node, path: String) throws -> NodeImplementation {
        guard let cName = node.name, let run = node.run else { throw LoadError(path: path, message: "a node has no name or run function") }
        let name = String(cString: cName)
        func fail(_ message: String) -> LoadError { LoadError(path: path, message: "node '\(name)': \(message)") }
        func ports(_ pointer: UnsafePointer<sdf_port>?, _ count: Int32, _ what: String) throws -> [NodeDescription.Port] {
            try list(pointer, count: count, of: "node '\(name)': \(what)", in: path).enumerated().map { i, p in
                guard let portName = p.name, let type = valueType(p.type) else { throw fail("\(what) port \(i) has no name or an unknown type") }
                return NodeDescription.Port(String(cString: portName), type, optional: p.optional != 0, help: p.help.map { String(cString: $0) } ?? "")
            }
        }
        let parameterList = try list(node.parameters, count: node.parameter_count, of: "node '\(name)': parameters", in: path)
        let parameters = try parameterList.enumerated().map { i, p -> NodeDescription.Parameter in
            guard let parameterName = p.name.map({ String(cString: $0) }) else { throw fail("parameter \(i) has no name") }
            let hasRange = p.minimum <= p.maximum  // false for "no range", and for NaN
            let kind: ParameterKind
            switch p.kind {
            case SDF_PARAMETER_INTEGER:
                // Int(x) traps on infinities and on values past Int's range: only whole numbers a Double holds exactly.
                let exact = -Double(1 << 53)...Double(1 << 53)
                if hasRange, !(exact.contains(p.minimum) && exact.contains(p.maximum) && p.minimum.rounded() == p.minimum && p.maximum.rounded() == p.maximum) {
                    throw fail("integer parameter '\(parameterName)' has the range \(p.minimum)...\(p.maximum); its ends must be whole numbers within ±2^53")
                }
                kind = .integer(hasRange ? Int(p.minimum)...Int(p.maximum) : nil)
            case SDF_PARAMETER_NUMBER: kind = .number(hasRange ? p.minimum...p.maximum : nil)
            case SDF_PARAMETER_TEXT: kind = .text
            case SDF_PARAMETER_BOOLEAN: kind = .boolean
            case SDF_PARAMETER_CHOICE:
                kind = .choice((p.choices.map { String(cString: $0) } ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
            case SDF_PARAMETER_SEED: kind = .seed
            case SDF_PARAMETER_INPUT_FILE: kind = .inputPath(.file)
            case SDF_PARAMETER_INPUT_FOLDER: kind = .inputPath(.folder)
            case SDF_PARAMETER_INPUT_FILE_OR_FOLDER: kind = .inputPath(.fileOrFolder)
            case SDF_PARAMETER_OUTPUT_PATH: kind = .outputPath
            default: throw fail("parameter '\(parameterName)' has an unknown kind")
            }
            let defaultValue = try p.default_value.map { text -> ParameterValue in
                guard let value = ParameterText.parse(String(cString: text), kind: kind) else {
                    throw fail("parameter '\(parameterName)' has an invalid default '\(String(cString: text))'")
                }
                return value
            }
            return NodeDescription.Parameter(parameterName, kind, default: defaultValue, help: p.help.map { String(cString: $0) } ?? "")
        }
        // A node that writes a file is an output node: it runs every time, as save_image does.
        let writesFiles = parameters.contains { if case .outputPath = $0.kind { return true }; return false }
        let description = NodeDescription(
            name: name, summary: node.summary.map { String(cString: $0) } ?? "", version: Int(node.version),
            inputs: try ports(node.inputs, node.input_count, "input"), outputs: try ports(node.outputs, node.output_count, "output"),
            parameters: parameters, isOutput: writesFiles || node.is_output != 0, alwaysRuns: writesFiles || node.is_output != 0)
        let data = node.node_data
        return NodeImplementation(description: description) { context in
            let call = ForeignCall(context: context, description: description)
            var message = [CChar](repeating: 0, count: 1024)
            let status = withExtendedLifetime(call) {
                withUnsafePointer(to: ForeignCall.host) { host in
                    run(data, host, OpaquePointer(Unmanaged.passUnretained(call).toOpaque()), &message, message.count)
                }
            }
            if context.isCancelled { throw NodeError.cancelled }
            // An output the host refused is the cause, also when the node then returned set_output's failure.
            if let problem = call.problem { throw NodeError.failed("plugin \(path): \(problem)") }
            guard status == 0 else {
                let text = String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                throw NodeError.failed("plugin \(path): \(text.isEmpty ? "node failed with status \(status)" : text)")
            }
            for port in description.outputs where call.outputs[port.name] == nil {
                throw NodeError.failed("plugin \(path): node '\(name)' did not set output '\(port.name)'")
            }
            return call.outputs
        }
    }

    /// A plugin's C array of described structs as Swift values, after checking its count
    /// (0...4096), that the pointer is there when the count says there are elements, and each
    /// element's `struct_size` (the first field; element 0's size is the array's stride).
    static func list<T>(_ pointer: UnsafePointer<T>?, count: Int32, of what: String, in path: String) throws -> [T] {
        guard (0...4096).contains(count) else { throw LoadError(path: path, message: "\(what): count \(count) is out of range (0...4096)") }
        guard count > 0 else { return [] }
        guard let pointer else { throw LoadError(path: path, message: "\(what): count \(count) but no array (NULL)") }
        let base = UnsafeRawPointer(pointer)
        let stride = Int(base.load(as: UInt32.self))
        try checkSize(stride, of: T.self, what: "\(what) 0", path: path)
        return try (0..<Int(count)).map { i in
            let element = base + i * stride
            let size = element.load(as: UInt32.self)
            guard size == stride else {
                throw LoadError(path: path, message: "\(what) \(i): struct_size \(size) differs from element 0's \(stride); set every element's to sizeof(\(T.self))")
            }
            return element.load(as: T.self)
        }
    }

    static func valueType(_ type: sdf_value_type) -> ValueType? {
        switch type {
        case SDF_TYPE_IMAGE: return .image
        case SDF_TYPE_MASK: return .mask
        case SDF_TYPE_LATENT: return .latent
        case SDF_TYPE_CONDITIONING: return .conditioning
        case SDF_TYPE_TENSOR: return .tensor
        case SDF_TYPE_NUMBER: return .number
        case SDF_TYPE_TEXT: return .text
        default: return nil
        }
    }
}

/// One execution of a plugin node: the host callbacks' state. Values handed to the plugin are
/// kept alive here until the call returns.
final class ForeignCall {
    let context: NodeContext
    let description: NodeDescription
    var outputs: [String: Value] = [:]
    var problem: String?
    private var inputs: [String: UnsafeMutablePointer<sdf_value>] = [:]
    private var keepAlive: [Any] = []
    private var strings: [UnsafeMutablePointer<CChar>] = []
    private var metadataLists: [UnsafeMutablePointer<sdf_metadata_entry>] = []

    init(context: NodeContext, description: NodeDescription) {
        self.context = context
        self.description = description
    }

    deinit {
        inputs.values.forEach { $0.deallocate() }
        strings.forEach { free($0) }
        metadataLists.forEach { $0.deallocate() }
    }

    static func from(_ context: OpaquePointer?) -> ForeignCall {
        Unmanaged<ForeignCall>.fromOpaque(UnsafeRawPointer(context!)).takeUnretainedValue()
    }

    func string(_ s: String) -> UnsafePointer<CChar> {
        let copy = strdup(s)!
        strings.append(copy)
        return UnsafePointer(copy)
    }

    func input(_ name: String) -> UnsafePointer<sdf_value>? {
        if let existing = inputs[name] { return UnsafePointer(existing) }
        guard let value = context.input(name) else { return nil }
        var v = sdf_value()
        v.struct_size = UInt32(MemoryLayout<sdf_value>.size)
        switch value {
        case .image(let image), .mask(let image):
            v.type = { if case .image = value { return SDF_TYPE_IMAGE }; return SDF_TYPE_MASK }()
            fill(&v, image.pixels)
            v.bit_depth = Int32(image.bitDepth)
            let entries = UnsafeMutablePointer<sdf_metadata_entry>.allocate(capacity: max(image.metadata.count, 1))
            for (i, (key, text)) in image.metadata.sorted(by: { $0.key < $1.key }).enumerated() {
                entries[i] = sdf_metadata_entry(key: string(key), value: string(text))
            }
            metadataLists.append(entries)
            v.metadata_count = Int32(image.metadata.count)
            v.metadata = UnsafePointer(entries)
        case .latent(let t): v.type = SDF_TYPE_LATENT; fill(&v, t)
        case .conditioning(let t, _): v.type = SDF_TYPE_CONDITIONING; fill(&v, t)
        case .tensor(let t): v.type = SDF_TYPE_TENSOR; fill(&v, t)
        case .number(let n): v.type = SDF_TYPE_NUMBER; v.number = n
        case .text(let s): v.type = SDF_TYPE_TEXT; v.text = string(s)
        default: return nil
        }
        let stored = UnsafeMutablePointer<sdf_value>.allocate(capacity: 1)
        stored.initialize(to: v)
        inputs[name] = stored
        return UnsafePointer(stored)
    }

    private func fill(_ v: inout sdf_value, _ t: Tensor) {
        let contiguous = t.copied()
        keepAlive.append(contiguous)
        v.rank = Int32(contiguous.rank)
        withUnsafeMutableBytes(of: &v.shape) { raw in
            let shape = raw.bindMemory(to: Int64.self)
            for (i, d) in contiguous.shape.prefix(8).enumerated() { shape[i] = Int64(d) }
        }
        v.data = contiguous.pointer
    }

    func setOutput(_ name: String, _ pointer: UnsafePointer<sdf_value>) -> Int32 {
        guard let port = description.output(name) else {
            problem = "node '\(description.name)' set an unknown output '\(name)'"
            return 1
        }
        if let sizeProblem = PluginLoader.sizeProblem(Int(pointer.pointee.struct_size), of: sdf_value.self) {
            problem = "output '\(name)' of '\(description.name)': \(sizeProblem)"
            return 1
        }
        let v = pointer.pointee
        func tensor() -> Tensor? {
            guard v.rank >= 0 && v.rank <= 8, let data = v.data else { return nil }
            let shape = withUnsafeBytes(of: v.shape) { Array($0.bindMemory(to: Int64.self).prefix(Int(v.rank))).map(Int.init) }
            guard shape.allSatisfy({ $0 >= 0 && $0 < (1 << 31) }) else { return nil }
            let count = shape.reduce(1, *)
            return Tensor(shape: shape, values: Array(UnsafeBufferPointer(start: data, count: count)))
        }
        let value: Value?
        switch port.type {
        case .image, .mask:
            guard let t = tensor(), t.rank == 3, (1...4).contains(t.shape[0]) else {
                problem = "output '\(name)' of '\(description.name)' must be a (C, H, W) image with 1-4 channels"
                return 1
            }
            guard [0, 8, 16].contains(v.bit_depth) else {
                problem = "output '\(name)' of '\(description.name)' has bit_depth \(v.bit_depth); images are 8 or 16 bits (0 means 8)"
                return 1
            }
            guard let metadata = imageMetadata(v) else {
                problem = "output '\(name)' of '\(description.name)' has malformed metadata (a count of \(v.metadata_count) beyond 0...4096, no array, or an entry without key or value)"
                return 1
            }
            let image = Image(pixels: t, metadata: metadata, bitDepth: v.bit_depth == 16 ? 16 : 8)
            value = port.type == .image ? .image(image) : .mask(image)
        case .latent: value = tensor().map(Value.latent)
        case .conditioning: value = tensor().map { Value.conditioning($0) }
        case .tensor: value = tensor().map(Value.tensor)
        case .number: value = .number(v.number)
        case .text: value = v.text.map { .text(String(cString: $0)) }
        default: value = nil
        }
        guard let value else {
            problem = "output '\(name)' of '\(description.name)' is not a valid \(port.type)"
            return 1
        }
        outputs[name] = value
        return 0
    }

    /// An output image's metadata, or nil when the plugin's list is malformed.
    private func imageMetadata(_ v: sdf_value) -> [String: String]? {
        guard (0...4096).contains(v.metadata_count) else { return nil }
        guard v.metadata_count > 0 else { return [:] }
        guard let entries = v.metadata else { return nil }
        var metadata: [String: String] = [:]
        for entry in UnsafeBufferPointer(start: entries, count: Int(v.metadata_count)) {
            guard let key = entry.key, let text = entry.value else { return nil }
            metadata[String(cString: key)] = String(cString: text)
        }
        return metadata
    }

    /// The host callbacks, shared by every call (the call is found through the context pointer).
    static let host = sdf_host(
        struct_size: UInt32(MemoryLayout<sdf_host>.size),
        input: { context, name in
            guard let name else { return nil }
            return ForeignCall.from(context).input(String(cString: name))
        },
        parameter: { context, name in
            guard let name else { return nil }
            let call = ForeignCall.from(context)
            guard let value = call.context.parameter(String(cString: name)) else { return nil }
            return call.string(value.description)
        },
        set_output: { context, name, value in
            guard let name, let value else { return 1 }
            return ForeignCall.from(context).setOutput(String(cString: name), value)
        },
        progress: { context, completed, total in
            ForeignCall.from(context).context.progress(completed: Int(completed), total: Int(total))
        },
        is_cancelled: { context in ForeignCall.from(context).context.isCancelled ? 1 : 0 },
        warn: { context, message in
            guard let message else { return }
            ForeignCall.from(context).context.warn(String(cString: message))
        })
}

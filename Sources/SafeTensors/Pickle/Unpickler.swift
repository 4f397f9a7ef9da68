import Foundation

/// A restricted unpickler: it reads the pickles inside PyTorch checkpoints and builds nothing but
/// plain values, containers, tensors and their storages. No code runs: a pickle is a program for
/// Python's pickle machine, and this machine knows only the operations that build data. As
/// `torch.load(weights_only=True)` does, it refuses every global (class or function) outside a
/// short allow-list, and the few it allows are interpreted here, never called.
///
/// Containers live in arrays (`sequences`, `dicts`) and values refer to them by index, so a deeply
/// nested or self-referencing pickle costs memory, not stack, and cannot loop.
struct Unpickler {
    /// One value on the machine's stack or in its memo.
    enum Value {
        case none, bool(Bool), int(Int), float(Double), string(String), bytes(Data)
        /// An integer too large for 64 bits (kept as an opaque number).
        case bigInt
        /// A tuple, list or set: an index into `sequences`.
        case sequence(Int)
        /// A dict or OrderedDict: an index into `dicts`.
        case dict(Int)
        /// An allowed global, not yet applied.
        case global(Global)
        /// A storage named by a persistent id: an index into `storages`.
        case storage(Int)
        /// A tensor view of a storage: an index into `tensors`.
        case tensor(Int)
        /// An inert object of an allowed bookkeeping class (never used as weights).
        case opaque(String)
    }

    /// The globals a checkpoint may name, and what they build here.
    enum Global: Equatable {
        case orderedDict
        /// `torch._utils._rebuild_tensor_v2` / `_rebuild_tensor`.
        case rebuildTensor
        /// `torch._utils._rebuild_parameter` / `_rebuild_parameter_with_state`: the tensor itself.
        case rebuildParameter
        /// `torch.FloatStorage` and the other typed storages, named inside persistent ids.
        case storageType(DType)
        /// `torch.Size`: a tuple.
        case size
        /// `_codecs.encode(text, "latin1")`: how protocol 2 writes bytes.
        case encode
        /// `set`, `bytearray` and `collections.Counter` of plain values: a sequence, bytes or a dict.
        case set, bytearray, counter
        /// Training bookkeeping that real checkpoints carry (Lightning's ModelCheckpoint, numpy
        /// scalars): an inert placeholder that is never called and never becomes a weight.
        case inert(String)
    }

    /// A storage: `count` elements of `dtype` at element `offset` of the stored data named `key`.
    struct Storage: Equatable {
        var key: String
        var dtype: DType
        var offset: Int
        var count: Int
    }

    /// A tensor: a strided view of a storage.
    struct TensorView {
        var storage: Int
        var offset: Int
        var shape: [Int]
        var strides: [Int]
    }

    /// Reads the storage a persistent id names (a tuple, as an index into `sequences`).
    typealias PersistentLoad = (inout Unpickler, [Value]) throws -> Value

    let path: String
    private(set) var sequences: [[Value]] = []
    private(set) var dicts: [[(key: Value, value: Value)]] = []
    private(set) var storages: [Storage] = []
    private(set) var tensors: [TensorView] = []
    private var stringKeys: [[String: Int]] = []
    private var storageByKey: [String: Int] = [:]

    init(path: String) { self.path = path }

    // MARK: - Errors

    /// The pickle tries to build or call something outside the allow-list.
    func refused(_ what: String, at offset: Int) -> TorchCheckpointError {
        .refused(path: path, reason: "\(what) (pickle byte \(offset)); only tensors and plain containers are read, as torch.load(weights_only=True) does")
    }

    func corrupt(_ what: String, at offset: Int) -> TorchCheckpointError {
        .corrupt(path: path, reason: "\(what) (pickle byte \(offset))")
    }

    // MARK: - Containers

    mutating func newSequence(_ items: [Value]) -> Value {
        sequences.append(items)
        return .sequence(sequences.count - 1)
    }

    mutating func newDict() -> Value {
        dicts.append([])
        stringKeys.append([:])
        return .dict(dicts.count - 1)
    }

    /// Sets `dict[key] = value`, replacing an earlier value of the same string key as Python does.
    mutating func set(_ dict: Int, _ key: Value, _ value: Value) {
        if case let .string(name) = key, let position = stringKeys[dict][name] {
            dicts[dict][position].value = value
            return
        }
        if case let .string(name) = key { stringKeys[dict][name] = dicts[dict].count }
        dicts[dict].append((key, value))
    }

    /// The storage of a persistent id, shared by every id with the same key.
    mutating func storage(_ storage: Storage) -> Value {
        if let index = storageByKey[storage.key + "@\(storage.offset)"], storages[index] == storage { return .storage(index) }
        storages.append(storage)
        storageByKey[storage.key + "@\(storage.offset)"] = storages.count - 1
        return .storage(storages.count - 1)
    }

    /// The global `module.name`, or a refusal.
    func global(_ module: String, _ name: String, at offset: Int) throws -> Global {
        switch (module, name) {
        case ("collections", "OrderedDict"): return .orderedDict
        case ("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor"): return .rebuildTensor
        case ("torch._utils", "_rebuild_parameter"), ("torch._utils", "_rebuild_parameter_with_state"): return .rebuildParameter
        case ("torch", "Size"): return .size
        case ("_codecs", "encode"): return .encode
        case ("builtins", "set"), ("__builtin__", "set"): return .set
        case ("builtins", "bytearray"), ("__builtin__", "bytearray"): return .bytearray
        case ("collections", "Counter"): return .counter
        case ("torch", _) where Unpickler.torchConstants.contains(name):
            return .inert(module + "." + name)
        case ("torch", _) where Unpickler.storageTypes[name] != nil: return .storageType(Unpickler.storageTypes[name]!)
        case ("pytorch_lightning.callbacks.model_checkpoint", "ModelCheckpoint"),
             ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"), ("numpy", "dtype"):
            return .inert(module + "." + name)
        default:
            throw refused("it names \(module).\(name)", at: offset)
        }
    }

    /// Names in `torch` that pickles use as plain values (dtypes, layouts, devices, the tensor type).
    static let torchConstants: Set<String> = [
        "float32", "float", "float16", "half", "bfloat16", "float64", "double", "int64", "long", "int32", "int",
        "int16", "short", "int8", "uint8", "bool", "complex64", "complex128", "strided", "sparse_coo", "device", "Tensor",
    ]

    static let storageTypes: [String: DType] = [
        "FloatStorage": .f32, "HalfStorage": .f16, "BFloat16Storage": .bf16, "DoubleStorage": .f64,
        "LongStorage": .i64, "IntStorage": .i32, "ShortStorage": .i16, "CharStorage": .i8,
        "ByteStorage": .u8, "BoolStorage": .bool,
    ]

    // MARK: - Applying globals

    /// `callable(*arguments)` for an allowed global (REDUCE and NEWOBJ).
    mutating func apply(_ callable: Value, _ arguments: Value, at offset: Int) throws -> Value {
        guard case let .global(global) = callable else { throw refused("it calls a value that is not an allowed global", at: offset) }
        guard case let .sequence(index) = arguments else { throw corrupt("the arguments of a call are not a tuple", at: offset) }
        let args = sequences[index]
        switch global {
        case .orderedDict:
            let dict = newDict()
            guard case let .dict(d) = dict else { return dict }
            if case let .dict(source)? = args.first {  // Counter({key: count}), OrderedDict({...})
                for (key, value) in dicts[source] { set(d, key, value) }
            } else if let items = args.first {  // OrderedDict([(key, value), ...])
                guard case let .sequence(list) = items else { throw corrupt("OrderedDict of a non-list", at: offset) }
                for pair in sequences[list] {
                    guard case let .sequence(p) = pair, sequences[p].count == 2 else { throw corrupt("OrderedDict item is not a pair", at: offset) }
                    set(d, sequences[p][0], sequences[p][1])
                }
            }
            return dict
        case .rebuildTensor:
            guard args.count >= 4, case let .storage(storage) = args[0], case let .int(start) = args[1],
                  let shape = integers(args[2]), let strides = integers(args[3]), shape.count == strides.count else {
                throw refused("_rebuild_tensor_v2 is called with arguments that are not (storage, offset, size, stride)", at: offset)
            }
            guard start >= 0, shape.allSatisfy({ $0 >= 0 }), strides.allSatisfy({ $0 >= 0 }) else {
                throw corrupt("a tensor has a negative offset, size or stride", at: offset)
            }
            tensors.append(TensorView(storage: storage, offset: start, shape: shape, strides: strides))
            return .tensor(tensors.count - 1)
        case .rebuildParameter:
            guard let data = args.first, case .tensor = data else { throw refused("_rebuild_parameter is called without a tensor", at: offset) }
            return data
        case .size:
            guard let items = args.first, integers(items) != nil else { throw corrupt("torch.Size of something other than integers", at: offset) }
            return items
        case .encode:
            guard case let .string(text)? = args.first else { throw refused("_codecs.encode of something other than text", at: offset) }
            return .bytes(Data(text.unicodeScalars.map { UInt8(truncatingIfNeeded: $0.value) }))
        case .set:
            guard let items = args.first else { return newSequence([]) }
            guard case let .sequence(list) = items else { throw corrupt("a set of something other than a list", at: offset) }
            return newSequence(sequences[list])
        case .bytearray:
            if case let .bytes(data)? = args.first { return .bytes(data) }
            return .bytes(Data())
        case .counter:
            return try apply(.global(.orderedDict), arguments, at: offset)

        case let .inert(name):
            return .opaque(name)
        case .storageType:
            throw refused("it constructs a storage directly", at: offset)
        }
    }

    /// The integers of a tuple or list value, or nil.
    func integers(_ value: Value) -> [Int]? {
        guard case let .sequence(index) = value else { return nil }
        var result: [Int] = []
        for item in sequences[index] {
            guard case let .int(i) = item else { return nil }
            result.append(i)
        }
        return result
    }

    // MARK: - The machine

    /// Runs the pickle that starts at `start` of `bytes` up to its STOP; returns the value it built
    /// and the offset after the STOP. `persistentLoad` turns persistent ids into storages.
    mutating func load(_ bytes: UnsafeRawBufferPointer, from start: Int = 0, persistentLoad: PersistentLoad) throws -> (Value, end: Int) {
        var reader = ByteReader(bytes: bytes, position: start, path: path)
        var stack: [Value] = []
        var marks: [Int] = []
        var memo: [Int: Value] = [:]

        func pop(_ at: Int) throws -> Value {
            guard let value = stack.popLast() else { throw corrupt("stack underflow", at: at) }
            return value
        }
        func popMark(_ at: Int) throws -> [Value] {
            guard let mark = marks.popLast(), mark <= stack.count else { throw corrupt("no MARK before a container end", at: at) }
            let items = Array(stack[mark...])
            stack.removeSubrange(mark...)
            return items
        }
        func top(_ at: Int) throws -> Value {
            guard let value = stack.last else { throw corrupt("stack underflow", at: at) }
            return value
        }

        while true {
            let at = reader.position
            let op = try reader.byte()
            switch op {
            case 0x80: _ = try reader.byte()  // PROTO
            case 0x95: _ = try reader.fixed(8)  // FRAME: a hint only
            case 0x2E: return (try pop(at), reader.position)  // STOP
            case 0x4E: stack.append(.none)
            case 0x88: stack.append(.bool(true))
            case 0x89: stack.append(.bool(false))
            case 0x4B: stack.append(.int(Int(try reader.fixed(1))))  // BININT1
            case 0x4D: stack.append(.int(Int(try reader.fixed(2))))  // BININT2
            case 0x4A: stack.append(.int(Int(Int32(truncatingIfNeeded: try reader.fixed(4)))))  // BININT
            case 0x8A: stack.append(try reader.long(length: Int(try reader.fixed(1))))  // LONG1
            case 0x8B: stack.append(try reader.long(length: Int(try reader.fixed(4))))  // LONG4
            case 0x47:  // BINFLOAT, big-endian
                stack.append(.float(Double(bitPattern: try reader.fixed(8).byteSwapped)))
            case 0x58: stack.append(.string(try reader.text(length: Int(try reader.fixed(4)))))  // BINUNICODE
            case 0x8C: stack.append(.string(try reader.text(length: Int(try reader.fixed(1)))))  // SHORT_BINUNICODE
            case 0x8D: stack.append(.string(try reader.text(length: try reader.length8())))  // BINUNICODE8
            case 0x54: stack.append(.string(try reader.latin1(length: Int(try reader.fixed(4)))))  // BINSTRING (protocol 2)
            case 0x55: stack.append(.string(try reader.latin1(length: Int(try reader.fixed(1)))))  // SHORT_BINSTRING
            case 0x42: stack.append(.bytes(try reader.data(length: Int(try reader.fixed(4)))))  // BINBYTES
            case 0x43: stack.append(.bytes(try reader.data(length: Int(try reader.fixed(1)))))  // SHORT_BINBYTES
            case 0x8E, 0x96: stack.append(.bytes(try reader.data(length: try reader.length8())))  // BINBYTES8, BYTEARRAY8
            case 0x7D: stack.append(newDict())  // EMPTY_DICT
            case 0x5D, 0x8F: stack.append(newSequence([]))  // EMPTY_LIST, EMPTY_SET
            case 0x29: stack.append(newSequence([]))  // EMPTY_TUPLE
            case 0x28: marks.append(stack.count)  // MARK
            case 0x74: stack.append(newSequence(try popMark(at)))  // TUPLE
            case 0x91: stack.append(newSequence(try popMark(at)))  // FROZENSET
            case 0x85, 0x86, 0x87:  // TUPLE1..3
                let n = Int(op - 0x84)
                guard stack.count >= n else { throw corrupt("stack underflow", at: at) }
                let items = Array(stack.suffix(n))
                stack.removeLast(n)
                stack.append(newSequence(items))
            case 0x61:  // APPEND
                let item = try pop(at)
                guard case let .sequence(list) = try top(at) else { throw corrupt("APPEND to a non-list", at: at) }
                sequences[list].append(item)
            case 0x65, 0x90:  // APPENDS, ADDITEMS
                let items = try popMark(at)
                guard case let .sequence(list) = try top(at) else { throw corrupt("APPENDS to a non-list", at: at) }
                sequences[list].append(contentsOf: items)
            case 0x73:  // SETITEM
                let value = try pop(at), key = try pop(at)
                guard case let .dict(dict) = try top(at) else { throw corrupt("SETITEM on a non-dict", at: at) }
                set(dict, key, value)
            case 0x75:  // SETITEMS
                let items = try popMark(at)
                guard case let .dict(dict) = try top(at), items.count % 2 == 0 else { throw corrupt("SETITEMS on a non-dict", at: at) }
                for i in stride(from: 0, to: items.count, by: 2) { set(dict, items[i], items[i + 1]) }
            case 0x71: memo[Int(try reader.fixed(1))] = try top(at)  // BINPUT
            case 0x72: memo[Int(try reader.fixed(4))] = try top(at)  // LONG_BINPUT
            case 0x94: memo[memo.count] = try top(at)  // MEMOIZE
            case 0x68, 0x6A:  // BINGET, LONG_BINGET
                let index = Int(try reader.fixed(op == 0x68 ? 1 : 4))
                guard let value = memo[index] else { throw corrupt("memo entry \(index) is not set", at: at) }
                stack.append(value)
            case 0x30: _ = try pop(at)  // POP
            case 0x31: _ = try popMark(at)  // POP_MARK
            case 0x32: stack.append(try top(at))  // DUP
            case 0x63:  // GLOBAL "module\nname\n"
                let module = try reader.line(), name = try reader.line()
                stack.append(.global(try global(module, name, at: at)))
            case 0x93:  // STACK_GLOBAL
                let name = try pop(at), module = try pop(at)
                guard case let .string(m) = module, case let .string(n) = name else { throw corrupt("STACK_GLOBAL of non-strings", at: at) }
                stack.append(.global(try global(m, n, at: at)))
            case 0x52, 0x81:  // REDUCE, NEWOBJ
                let arguments = try pop(at), callable = try pop(at)
                stack.append(try apply(callable, arguments, at: at))
            case 0x62:  // BUILD: state for dicts (their attributes), parameters and placeholders is ignored
                _ = try pop(at)
                switch try top(at) {
                case .dict, .tensor, .opaque: break
                default: throw refused("it sets the state of an object that is not a dict or tensor", at: at)
                }
            case 0x51:  // BINPERSID
                let id = try pop(at)
                guard case let .sequence(index) = id else { throw corrupt("a persistent id that is not a tuple", at: at) }
                stack.append(try persistentLoad(&self, sequences[index]))
            case 0x69: throw refused("it builds an object with INST", at: at)
            case 0x6F: throw refused("it builds an object with OBJ", at: at)
            case 0x92: throw refused("it builds an object with NEWOBJ_EX", at: at)
            case 0x82, 0x83, 0x84: throw refused("it names an extension-registry global", at: at)
            default:
                throw corrupt(String(format: "unsupported pickle opcode 0x%02X (not a protocol 2-5 pickle of weights)", op), at: at)
            }
        }
    }
}

/// Reads the operands of pickle opcodes, never past the end.
private struct ByteReader {
    let bytes: UnsafeRawBufferPointer
    var position: Int
    let path: String

    func corrupt(_ what: String, at offset: Int) -> TorchCheckpointError {
        .corrupt(path: path, reason: "\(what) (pickle byte \(offset))")
    }

    mutating func need(_ count: Int) throws {
        guard count >= 0, count <= bytes.count - position else {
            throw corrupt("the pickle ends inside an opcode (needs \(count) bytes, \(bytes.count - position) left)", at: position)
        }
    }

    mutating func byte() throws -> UInt8 {
        try need(1)
        defer { position += 1 }
        return bytes[position]
    }

    /// A little-endian unsigned integer of `count` bytes (1...8).
    mutating func fixed(_ count: Int) throws -> UInt64 {
        try need(count)
        var value: UInt64 = 0
        for i in 0..<count { value |= UInt64(bytes[position + i]) << (8 * UInt64(i)) }
        position += count
        return value
    }

    mutating func length8() throws -> Int {
        let length = try fixed(8)
        guard length <= UInt64(bytes.count - position) else {
            throw corrupt("a length of \(length) bytes runs past the end of the pickle", at: position)
        }
        return Int(length)
    }

    mutating func data(length: Int) throws -> Data {
        try need(length)
        defer { position += length }
        return Data(bytes[position..<(position + length)])
    }

    mutating func text(length: Int) throws -> String {
        let raw = try data(length: length)
        guard let text = String(data: raw, encoding: .utf8) else { throw corrupt("a string that is not UTF-8", at: position - length) }
        return text
    }

    mutating func latin1(length: Int) throws -> String {
        String(decoding: try data(length: length).map { UInt16($0) }, as: UTF16.self)
    }

    /// A line up to "\n" (GLOBAL's operands), at most 256 bytes.
    mutating func line() throws -> String {
        var end = position
        while end < bytes.count, bytes[end] != 0x0A {
            end += 1
            guard end - position <= 256 else { throw corrupt("a GLOBAL name longer than 256 bytes", at: position) }
        }
        guard end < bytes.count else { throw corrupt("a GLOBAL name without its newline", at: position) }
        let text = String(decoding: bytes[position..<end], as: UTF8.self)
        position = end + 1
        return text
    }

    /// A little-endian two's-complement integer of `length` bytes (LONG1, LONG4).
    mutating func long(length: Int) throws -> Unpickler.Value {
        try need(length)
        defer { position += length }
        guard length > 0 else { return .int(0) }
        guard length <= 8 else { return .bigInt }
        var value: UInt64 = 0
        for i in 0..<length { value |= UInt64(bytes[position + i]) << (8 * UInt64(i)) }
        if length < 8, bytes[position + length - 1] & 0x80 != 0 { value |= ~0 << (8 * UInt64(length)) }  // sign-extend
        return .int(Int(Int64(bitPattern: value)))
    }
}

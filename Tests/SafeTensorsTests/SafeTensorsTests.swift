import Foundation
import SafeTensors
import TensorCore
import TestSupport
import Testing

@Suite struct SafeTensorsReadWriteTests {
    @Test func roundTripF32WithMetadata() throws {
        let folder = TemporaryFolder()
        let a = Tensor(shape: [2, 3], values: [1, -2, 3.5, 4, 5, 6e-8])
        let b = Tensor(shape: [4], values: [0, 1, 2, 3])
        let path = folder.file("x.safetensors")
        try SafeTensorsWriter.write(["a": a, "b": b], metadata: ["seed": "42"], to: path)
        let file = try SafeTensorsFile(path: path)
        #expect(file.names == ["a", "b"])
        #expect(file.metadata == ["seed": "42"])
        #expect(try file.tensor("a").scalars == a.scalars)
        #expect(try file.tensor("a").shape == [2, 3])
        #expect(try file.tensor("b").scalars == b.scalars)
        #expect(throws: SafeTensorsError.missingTensor(path: path, tensor: "c")) { try file.tensor("c") }
    }

    /// Dropping mapped pages from the resident set keeps the mapping readable, with the same values.
    @Test func releasedPagesReadBackTheSame() throws {
        let folder = TemporaryFolder()
        let a = Tensor(shape: [300_000], values: (0..<300_000).map { Float($0) * 0.5 })
        let path = folder.file("big.safetensors")
        try SafeTensorsWriter.write(["a": a], to: path)
        let file = try SafeTensorsFile(path: path)
        let before = try file.tensor("a")
        #expect(before.scalars == a.scalars)
        MappedFile.releaseResidentPages()
        #expect(before.scalars == a.scalars)
        #expect(try file.tensor("a").scalars == a.scalars)
    }

    @Test func roundTripF16() throws {
        let folder = TemporaryFolder()
        let a = Tensor(shape: [5], values: [1, -2, 0.1, 65504, 1e-6])
        let path = folder.file("h.safetensors")
        try SafeTensorsWriter.write(["a": a], storage: .f16, to: path)
        let file = try SafeTensorsFile(path: path)
        #expect(file.entries["a"]?.dtype == .f16)
        let back = try file.tensor("a").scalars
        for (x, y) in zip(a.scalars, back) { #expect(abs(x - y) <= abs(x) * 0.001 + 6e-8) }
    }

    @Test func readsTorchHalfAndBFloat16Exactly() throws {
        let file = try Fixtures.tensors("dtypes.safetensors")
        #expect(file.metadata["format"] == "pt")
        #expect(try file.tensor("f16").scalars == file.tensor("f16_as_f32").scalars)
        #expect(try file.tensor("f16_special").scalars == file.tensor("f16_special_as_f32").scalars)
        #expect(try file.tensor("bf16").scalars == file.tensor("bf16_as_f32").scalars)
        #expect(try file.tensor("i64").scalars == [0, 1, 2, 3, 4])
    }

    @Test func readsRowsOfEveryDType() throws {
        let file = try Fixtures.tensors("dtypes.safetensors")
        for name in ["f16", "bf16", "f16_as_f32", "i64"] {
            let whole = try file.tensor(name)
            let first = whole.shape[0]
            for rows in [0..<first, 1..<2, first - 1..<first, 2..<2] {
                let part = try file.tensor(name, rows: rows)
                #expect(part.shape == [rows.count] + whole.shape.dropFirst(), "\(name) rows \(rows)")
                #expect(part.scalars == whole.slice(rows).scalars, "\(name) rows \(rows)")
            }
            for rows in [0..<(first + 1), -1..<1] {
                #expect(throws: SafeTensorsError.self, "\(name) rows \(rows)") { try file.tensor(name, rows: rows) }
            }
        }
    }

    @Test func halfConversionMatchesFloat16Everywhere() {
        let all = (UInt16.min...UInt16.max).map { $0.littleEndian }
        var converted = [Float](repeating: 0, count: all.count)
        all.withUnsafeBytes { src in
            converted.withUnsafeMutableBufferPointer { HalfPrecision.convertF16(src.baseAddress!, count: all.count, to: $0.baseAddress!) }
        }
        var mismatches = 0
        for (bits, value) in zip(UInt16.min...UInt16.max, converted) {
            let reference = Float(Float16(bitPattern: bits))
            let scalar = HalfPrecision.floatFromHalf(bits)
            if reference.isNaN {
                if !value.isNaN || !scalar.isNaN { mismatches += 1 }
            } else if value.bitPattern != reference.bitPattern || scalar.bitPattern != reference.bitPattern {
                mismatches += 1
            }
        }
        #expect(mismatches == 0)
    }
}

/// Hand-made corrupt files: each must give its own error naming the file and tensor.
@Suite struct SafeTensorsCorruptFileTests {
    let folder = TemporaryFolder()

    /// Writes a file from a header JSON string and `dataBytes` zero bytes of data.
    func make(_ header: String, dataBytes: Int, headerLength: UInt64? = nil) -> String {
        let path = folder.file("bad-\(UUID().uuidString).safetensors")
        var data = Data()
        let json = Data(header.utf8)
        withUnsafeBytes(of: (headerLength ?? UInt64(json.count)).littleEndian) { data.append(contentsOf: $0) }
        data.append(json)
        data.append(Data(count: dataBytes))
        _ = FileManager.default.createFile(atPath: path, contents: data)
        return path
    }

    func error(opening path: String) -> SafeTensorsError? {
        do {
            _ = try SafeTensorsFile(path: path)
            return nil
        } catch let e as SafeTensorsError {
            #expect(e.description.contains(path))
            return e
        } catch {
            return nil
        }
    }

    @Test func zeroByteAndMissingFiles() {
        let empty = folder.file("empty.safetensors")
        _ = FileManager.default.createFile(atPath: empty, contents: Data())
        #expect(error(opening: empty) == .truncatedHeader(path: empty, size: 0))
        let missing = folder.file("missing.safetensors")
        guard case .cannotOpen? = error(opening: missing) else { Issue.record("missing file not reported"); return }
    }

    @Test func headerLargerThanFile() {
        let path = make(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, dataBytes: 4, headerLength: 1 << 40)
        guard case .headerTooLarge? = error(opening: path) else { Issue.record("header length not checked"); return }
        // All ones: the message gives the stored number, not a clamped one.
        let ones = make(#"{}"#, dataBytes: 0, headerLength: UInt64.max)
        #expect(error(opening: ones)?.description.contains("header claims 18446744073709551615 bytes") == true, "\(String(describing: error(opening: ones)))")
    }

    @Test func invalidJSON() {
        let path = make(#"{"a":{"dtype":"F32","#, dataBytes: 4)
        guard case .invalidHeader? = error(opening: path) else { Issue.record("bad JSON not reported"); return }
    }

    @Test func unknownDType() {
        let path = make(#"{"a":{"dtype":"F12","shape":[1],"data_offsets":[0,4]}}"#, dataBytes: 4)
        #expect(error(opening: path) == .unknownDType(path: path, tensor: "a", dtype: "F12"))
    }

    @Test func shapeDoesNotMatchByteCount() {
        let path = make(#"{"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}}"#, dataBytes: 20)
        #expect(error(opening: path) == .shapeMismatch(path: path, tensor: "w", shape: [2, 3], dtype: "F32", byteCount: 20))
    }

    @Test func outOfBoundsOffsetsAndTruncation() {
        let path = make(#"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#, dataBytes: 10)
        #expect(error(opening: path) == .outOfBounds(path: path, tensor: "w", end: 16, dataSize: 10))
        // A real file cut short.
        let good = folder.file("good.safetensors")
        try? SafeTensorsWriter.write(["x": Tensor(zeros: [100])], to: good)
        let bytes = FileManager.default.contents(atPath: good)!
        let cut = folder.file("cut.safetensors")
        _ = FileManager.default.createFile(atPath: cut, contents: bytes.prefix(bytes.count - 7))
        guard case .outOfBounds(_, "x", _, _)? = error(opening: cut) else { Issue.record("truncation not reported"); return }
    }

    @Test func overlappingTensors() {
        let path = make(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
                        dataBytes: 12)
        #expect(error(opening: path) == .overlap(path: path, tensor: "b", other: "a"))
    }

    @Test func malformedEntries() {
        let negative = make(#"{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#, dataBytes: 4)
        guard case .invalidEntry(_, "a", _)? = error(opening: negative) else { Issue.record("negative shape accepted"); return }
        let reversed = make(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}"#, dataBytes: 4)
        guard case .invalidEntry(_, "a", _)? = error(opening: reversed) else { Issue.record("reversed offsets accepted"); return }
        let notObject = make(#"[1,2,3]"#, dataBytes: 0)
        guard case .invalidHeader? = error(opening: notObject) else { Issue.record("array header accepted"); return }
    }
}
